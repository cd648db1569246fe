import pytest

from extractor.datasets.ground_truth import from_csv, from_folders
from tests.assets import LFW_IMAGES, LFW_LABELS, requires_assets


def write(path, text: str):
    path.write_text(text)
    return path


def test_folders_give_the_first_directory_under_root(tmp_path):
    paths = ["alice/1.jpg", "alice/trip/2.jpg", "bob/3.png", "loose.jpg", tmp_path / "carol" / "4.jpg"]
    assert from_folders(tmp_path, paths) == {"alice/1.jpg": "alice", "alice/trip/2.jpg": "alice",
                                             "bob/3.png": "bob", "carol/4.jpg": "carol"}


def test_folders_reject_a_path_outside_the_root(tmp_path):
    with pytest.raises(ValueError, match="not under the images root"):
        from_folders(tmp_path / "images", [tmp_path / "elsewhere" / "x.jpg"])


def test_csv_by_filename_matches_images_in_any_folder_and_skips_blanks(tmp_path):
    csv_path = write(tmp_path / "labels.csv", "filename,gender\na.jpg,male\nb.jpg,\nc.jpg,female\nz.jpg,male\n")
    assert from_csv(csv_path, "gender", ["sub/a.jpg", "b.jpg", "c.jpg", "d.jpg"]) == {
        "sub/a.jpg": "male", "c.jpg": "female"}


def test_csv_by_path_prefers_the_path_column_and_normalises_it(tmp_path):
    csv_path = write(tmp_path / "labels.csv", "filename,path,person\nx.jpg,./one/x.jpg,ann\nx.jpg,two\\x.jpg,ben\n")
    assert from_csv(csv_path, "person", ["one/x.jpg", "two/x.jpg"]) == {"one/x.jpg": "ann", "two/x.jpg": "ben"}


def test_one_function_serves_labels_and_groups(tmp_path):
    csv_path = write(tmp_path / "labels.csv", "filename,person,gender\na.jpg,Ann,female\nb.jpg,Ann,female\n")
    assert from_csv(csv_path, "person", ["a.jpg", "b.jpg"]) == {"a.jpg": "Ann", "b.jpg": "Ann"}
    assert from_csv(csv_path, "gender", ["a.jpg"]) == {"a.jpg": "female"}


@pytest.mark.parametrize("text,column,message", [
    ("name,gender\na.jpg,male\n", "gender", r"'path' or 'filename' column .*columns present: name, gender"),
    ("filename,gender\na.jpg,male\n", "age", r"no column 'age'; columns present: filename, gender"),
    ("filename,gender\na.jpg,male\na.jpg,female\n", "gender", r":3: filename 'a.jpg' has two gender values"),
])
def test_csv_errors_say_what_is_wrong(tmp_path, text, column, message):
    with pytest.raises(ValueError, match=message):
        from_csv(write(tmp_path / "labels.csv", text), column, ["a.jpg"])


def test_a_file_name_shared_by_two_images_is_ambiguous(tmp_path):
    csv_path = write(tmp_path / "labels.csv", "filename,gender\na.jpg,male\n")
    with pytest.raises(ValueError, match="matches 2 images"):
        from_csv(csv_path, "gender", ["x/a.jpg", "y/a.jpg"])


@requires_assets
def test_lfw_labels_give_gender_and_person_for_every_image():
    names = sorted(path.name for path in LFW_IMAGES.iterdir())
    gender, person = from_csv(LFW_LABELS, "gender", names), from_csv(LFW_LABELS, "person", names)
    assert len(gender) == len(person) == len(names) == 6049
    assert set(gender.values()) == {"male", "female"} and len(set(person.values())) == 2474
    assert person["Aaron_Eckhart_0001.jpg"] == "Aaron_Eckhart"
