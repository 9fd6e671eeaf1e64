#ifndef MULTIPACK_CRYPTO_SHIM_H
#define MULTIPACK_CRYPTO_SHIM_H

// SHA-256 and SHA-1 (git's object names) from OpenSSL's libcrypto, loaded with dlopen on first use like libcurl (whose own
// dependency it is, so every stack that has libcurl has it). Linking swift-crypto instead cost
// 2.4 MB of the 16 MB budget (BoringSSL and every algorithm's metadata). The EVP calls below
// exist unchanged in OpenSSL 1.1 and 3; the types are opaque, so no OpenSSL headers are needed.
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct evp_md_st multipack_evp_md;
typedef struct evp_md_ctx_st multipack_evp_md_ctx;

struct multipack_crypto {
    multipack_evp_md_ctx *(*ctx_new)(void);
    void (*ctx_free)(multipack_evp_md_ctx *context);
    const multipack_evp_md *(*sha256)(void);
    const multipack_evp_md *(*sha1)(void);
    int (*init)(multipack_evp_md_ctx *context, const multipack_evp_md *type, void *engine);
    int (*update)(multipack_evp_md_ctx *context, const void *data, size_t count);
    int (*final)(multipack_evp_md_ctx *context, unsigned char *digest, unsigned int *size);
};

/// Loads the first of `sonames` that has every entry point. Returns NULL and writes the reason
/// into `error` otherwise. The table lives for the rest of the process.
static inline const struct multipack_crypto *multipack_crypto_load(const char *const *sonames, size_t count,
                                                                   char *error, size_t error_size) {
    snprintf(error, error_size, "no libcrypto to load");
    for (size_t i = 0; i < count; i++) {
        void *library = dlopen(sonames[i], RTLD_NOW | RTLD_LOCAL);
        if (library == NULL) {
            const char *reason = dlerror();
            snprintf(error, error_size, "%s", reason != NULL ? reason : sonames[i]);
            continue;
        }
        struct multipack_crypto *api = calloc(1, sizeof *api);
        if (api == NULL) {
            snprintf(error, error_size, "out of memory");
            dlclose(library);
            return NULL;
        }
        // POSIX's sanctioned way to store a dlsym result in a function pointer.
        *(void **)(&api->ctx_new) = dlsym(library, "EVP_MD_CTX_new");
        *(void **)(&api->ctx_free) = dlsym(library, "EVP_MD_CTX_free");
        *(void **)(&api->sha256) = dlsym(library, "EVP_sha256");
        *(void **)(&api->sha1) = dlsym(library, "EVP_sha1");
        *(void **)(&api->init) = dlsym(library, "EVP_DigestInit_ex");
        *(void **)(&api->update) = dlsym(library, "EVP_DigestUpdate");
        *(void **)(&api->final) = dlsym(library, "EVP_DigestFinal_ex");
        if (api->ctx_new && api->ctx_free && api->sha256 && api->sha1 && api->init && api->update && api->final) {
            return api;
        }
        snprintf(error, error_size, "%s lacks the EVP digest functions", sonames[i]);
        free(api);
        dlclose(library);
    }
    return NULL;
}

/// A fresh SHA-256 (`sha1` 0) or SHA-1 (`sha1` 1) context, or NULL.
static inline multipack_evp_md_ctx *multipack_digest_begin(const struct multipack_crypto *api, int sha1) {
    multipack_evp_md_ctx *context = api->ctx_new();
    if (context != NULL && api->init(context, sha1 ? api->sha1() : api->sha256(), NULL) != 1) {
        api->ctx_free(context);
        return NULL;
    }
    return context;
}

static inline multipack_evp_md_ctx *multipack_sha256_begin(const struct multipack_crypto *api) {
    return multipack_digest_begin(api, 0);
}

static inline int multipack_sha256_update(const struct multipack_crypto *api, multipack_evp_md_ctx *context,
                                          const void *data, size_t count) {
    return api->update(context, data, count);
}

/// Writes the `expected`-byte digest (room for 64) and frees the context. Returns 1 on success.
static inline int multipack_digest_end(const struct multipack_crypto *api, multipack_evp_md_ctx *context,
                                       unsigned char digest[64], unsigned int expected) {
    unsigned int size = 0;
    int ok = api->final(context, digest, &size);
    api->ctx_free(context);
    return ok == 1 && size == expected;
}

/// Writes the 32-byte digest and frees the context. Returns 1 on success.
static inline int multipack_sha256_end(const struct multipack_crypto *api, multipack_evp_md_ctx *context,
                                       unsigned char digest[32]) {
    unsigned int size = 0;
    int ok = api->final(context, digest, &size);
    api->ctx_free(context);
    return ok == 1 && size == 32;
}

#endif
