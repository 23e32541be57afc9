"""Small helpers every room may use (the lowest room: imports nothing from voiceconv)."""
