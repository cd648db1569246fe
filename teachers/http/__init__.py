"""The HTTP teacher: configuration, wire codecs per protocol, the retry policy and the teacher."""
