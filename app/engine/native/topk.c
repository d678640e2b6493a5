/* The sampler's hot loop in C (app/engine/sampler.py, TopKSampler): the repeat penalty and the
 * exact top-k cut over llama.cpp's logits, in one pass over the vocabulary.
 *
 * Plain C99, no Python API: app/engine/native/__init__.py compiles it with abort.c into one library
 * with the machine's C compiler (or finds the copy the app was shipped with) and calls it through
 * ctypes. Where neither exists, the sampler does the same in numpy; tests/engine/test_native.py
 * checks that both give the same candidates, and tests/engine/test_sampler.py that the draws are
 * llama.cpp's.
 *
 * The cut: the logits are split into blocks of TLM_BLOCK consecutive tokens, and each block's
 * maximum is taken in one vectorisable pass. If t is the k-th largest block maximum, at least k
 * logits are >= t, so every one of the top k is >= t; and a logit >= t sits in a block whose maximum
 * is >= t. Only those blocks (about k of them) are read again, and every logit >= t in them is a
 * candidate, in token order (the order llama.cpp's own chain sees them in). Nothing is approximated:
 * the candidates are a superset of the top k, ties included. NaN logits are never candidates.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TLM_BLOCK 128
#define TLM_LANES 16
#define TLM_STACK_BLOCKS 4096

#if defined(_WIN32)
#define TLM_EXPORT __declspec(dllexport)
#else
#define TLM_EXPORT __attribute__((visibility("default")))
#endif

typedef struct {
    int32_t id;
    float logit;
    float p;
} tlm_token_data; /* llama_token_data (llama.h) */

/* The version of the library's functions (this file's and abort.c's): the loader refuses another. */
TLM_EXPORT int32_t tlm_native_version(void) { return 2; }

#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
typedef __m128 tlm_v4;
#define tlm_load(p) _mm_loadu_ps(p)
#define tlm_max(m, x) _mm_max_ps((x), (m)) /* (x > m) ? x : m — a NaN x is skipped */
#define tlm_lowest() _mm_set1_ps(-INFINITY)
#define tlm_store(p, v) _mm_storeu_ps((p), (v))
#elif defined(__ARM_NEON)
#include <arm_neon.h>
typedef float32x4_t tlm_v4;
#define tlm_load(p) vld1q_f32(p)
#define tlm_max(m, x) vmaxnmq_f32((m), (x)) /* IEEE maxNum: a NaN x is skipped */
#define tlm_lowest() vdupq_n_f32(-INFINITY)
#define tlm_store(p, v) vst1q_f32((p), (v))
#endif

#ifdef tlm_load
/* Four lanes (SSE, NEON), four accumulators: the logits of a GPU's answer arrive in memory the
 * caches have not seen, and reading them is what this costs, so the loop only has to keep up with
 * memory. (A software prefetch ahead of the loads was tried: no faster over logits read once.) */
static float block_max(const float *x, int32_t n) {
    tlm_v4 a0 = tlm_lowest(), a1 = a0, a2 = a0, a3 = a0;
    float lanes[4], m = -INFINITY;
    int32_t i, j;
    for (i = 0; i + TLM_LANES <= n; i += TLM_LANES) {
        a0 = tlm_max(a0, tlm_load(x + i));
        a1 = tlm_max(a1, tlm_load(x + i + 4));
        a2 = tlm_max(a2, tlm_load(x + i + 8));
        a3 = tlm_max(a3, tlm_load(x + i + 12));
    }
    tlm_store(lanes, tlm_max(tlm_max(a0, a1), tlm_max(a2, a3)));
    for (j = 0; j < 4; j++) m = lanes[j] > m ? lanes[j] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
#else
static float block_max(const float *x, int32_t n) {
    float m = -INFINITY;
    for (int32_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
#endif

/* The k-th largest of v[0..n) (1 <= k <= n), reordering v: Hoare's selection. */
static float kth_largest(float *v, int32_t n, int32_t k) {
    int32_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot) i++;
            while (v[j] < pivot) j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break; /* between j and i: every value there equals the pivot */
    }
    return v[want];
}

/* llama.cpp's penalties sampler on one logit (src/llama-sampling.cpp, llama_sampler_penalties_apply),
 * in float arithmetic as there. */
static float penalised(float logit, int32_t count, float repeat, float freq, float present) {
    logit = logit <= 0 ? logit * repeat : logit / repeat;
    float lowered = (float)count * freq;
    lowered = lowered + (float)(count > 0) * present;
    return logit - lowered;
}

/* Candidates for llama.cpp's top-k (k >= 1) from n logits, after the repeat penalty.
 *
 * logits: the n logits, changed while this runs (the n_pen penalised tokens pen_ids, each seen
 * pen_counts times) and restored before it returns. saved: room for n_pen floats.
 * out: room for cap candidates. Returns how many candidates there are (written up to cap; call
 * again with more room when the count is larger), or -1 when memory for the block maxima ran out. */
TLM_EXPORT int32_t tlm_topk_candidates(float *logits, int32_t n, int32_t k, const int32_t *pen_ids,
                                       const int32_t *pen_counts, int32_t n_pen, float repeat, float freq,
                                       float present, float *saved, tlm_token_data *out, int32_t cap) {
    int32_t i, b, m = 0;
    for (i = 0; i < n_pen; i++) {
        saved[i] = logits[pen_ids[i]];
        logits[pen_ids[i]] = penalised(saved[i], pen_counts[i], repeat, freq, present);
    }
    int32_t nb = (n + TLM_BLOCK - 1) / TLM_BLOCK;
    if (nb <= k) { /* a small vocabulary: every logit is a candidate */
        for (i = 0; i < n; i++) {
            if (logits[i] != logits[i]) continue;
            if (m < cap) {
                out[m].id = i;
                out[m].logit = logits[i];
                out[m].p = 0.0f;
            }
            m++;
        }
    } else {
        float stack_maxima[2 * TLM_STACK_BLOCKS];
        float *maxima = nb <= TLM_STACK_BLOCKS ? stack_maxima : malloc(2 * (size_t)nb * sizeof(float));
        if (maxima == NULL) {
            m = -1;
        } else {
            float *scratch = maxima + nb;
            for (b = 0; b < nb; b++) {
                int32_t start = b * TLM_BLOCK, len = n - start < TLM_BLOCK ? n - start : TLM_BLOCK;
                maxima[b] = block_max(logits + start, len);
            }
            memcpy(scratch, maxima, (size_t)nb * sizeof(float));
            float t = kth_largest(scratch, nb, k);
            for (b = 0; b < nb; b++) {
                if (!(maxima[b] >= t)) continue;
                int32_t start = b * TLM_BLOCK, end = n - start < TLM_BLOCK ? n : start + TLM_BLOCK;
                for (i = start; i < end; i++) {
                    if (!(logits[i] >= t)) continue;
                    if (m < cap) {
                        out[m].id = i;
                        out[m].logit = logits[i];
                        out[m].p = 0.0f;
                    }
                    m++;
                }
            }
            if (maxima != stack_maxima) free(maxima);
        }
    }
    for (i = n_pen - 1; i >= 0; i--) logits[pen_ids[i]] = saved[i]; /* backwards: a repeated id gets its first value */
    return m;
}
