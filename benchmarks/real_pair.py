"""The real teachers and faces the benchmarks use, from ../shared/assets (never committed here)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
IMAGES = ASSETS / "lfw_gender_6k" / "images"
LABELS = ASSETS / "lfw_gender_6k" / "labels.csv"
EMOTION = ASSETS / "teacher_emotion_fer2013" / "emotion-fer2013.onnx"
GENDER = ASSETS / "teacher_gender_dlib" / "gender-v1.onnx"
EMOTION_FLAGS = ["--channels", "gray", "--size", "48", "--mean", "127.5", "--std", "127.5"]
GENDER_FLAGS = ["--channels", "rgb", "--size", "32", "--mean", "122.782,117.001,104.298", "--std", "256"]
CENTRE_CROP = ["--center-crop", "0.4"]
"""The crop that puts an LFW face (250 px, centred) where both teachers expect it."""
CIFAR = ASSETS / "cifar10_jpg"
"""All 60,000 CIFAR-10 JPEGs (train.zip, test.zip) and their labels (train_labels.csv, test_labels.csv)."""
CIFAR_TEACHER = ASSETS / "teacher_cifar10_winml" / "ImageClassifier.onnx"
CIFAR_FLAGS = ["--mean", "127.5", "--std", "127.5"]
CIFAR_CLASSES = "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck"
