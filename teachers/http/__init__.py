"""The HTTP teacher: configuration, wire codecs per protocol, the retry policy and the teacher."""

DEFAULT_MAX_ANSWER_MB = 64.0
"""The largest answer body an HTTP teacher reads, in MiB after decompression (--max-answer-mb). Here, where
importing it costs nothing, so that the CLI and ``TeacherSource`` can name it without the HTTP stack."""
