"""Everything that runs llama.cpp lives here, always in a child process of the app."""
