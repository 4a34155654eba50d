"""The built-in teacher: a tiny Wan 2.1 trained from scratch on the procedural world (docs/builtin.md)."""
