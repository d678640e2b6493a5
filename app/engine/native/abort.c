/* llama.cpp's abort callback in C (app/engine/llama_session.py): ggml's CPU backend asks it after
 * every node of a graph, from its first thread, while all the other threads wait at the barrier that
 * follows. A Python callback there takes the GIL each time, hundreds of times a token when layers or
 * experts run on the CPU (tests/bench/abort_callback.py measures it); this one reads a flag the
 * Python side sets on a cancel. */
#include <stdbool.h>

#if defined(_WIN32)
#define TLM_EXPORT __declspec(dllexport)
#else
#define TLM_EXPORT __attribute__((visibility("default")))
#endif

/* ggml_abort_callback: true once *flag (an int the cancel sets) is not 0. */
TLM_EXPORT bool tlm_abort_requested(void *flag) { return *(volatile const int *)flag != 0; }
