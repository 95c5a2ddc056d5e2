// The OpenAI-compatible HTTP server (filled in below).
