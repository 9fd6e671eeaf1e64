#ifndef MULTIPACK_ZSTD_SHIM_H
#define MULTIPACK_ZSTD_SHIM_H

// libzstd for zstd-compressed image layers (SPEC §15), loaded with dlopen when the first such
// layer comes: no build of a Heroku app needs it, so the binary does not depend on it. The two
// buffer structs are zstd's stable API (zstd.h, "Streaming"), declared here so that no header
// is needed to build.
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct multipack_zstd_dctx multipack_zstd_dctx;

typedef struct {
    const void *src;
    size_t size;
    size_t pos;
} multipack_zstd_in;

typedef struct {
    void *dst;
    size_t size;
    size_t pos;
} multipack_zstd_out;

struct multipack_zstd {
    multipack_zstd_dctx *(*create)(void);
    size_t (*free)(multipack_zstd_dctx *context);
    size_t (*decompress)(multipack_zstd_dctx *context, multipack_zstd_out *output, multipack_zstd_in *input);
    unsigned (*is_error)(size_t code);
    const char *(*error_name)(size_t code);
};

/// Loads the first of `sonames` that has every entry point. Returns NULL and writes the reason
/// into `error` otherwise. The table lives for the rest of the process.
static inline const struct multipack_zstd *multipack_zstd_load(const char *const *sonames, size_t count,
                                                               char *error, size_t error_size) {
    snprintf(error, error_size, "no libzstd to load");
    for (size_t i = 0; i < count; i++) {
        void *library = dlopen(sonames[i], RTLD_NOW | RTLD_LOCAL);
        if (library == NULL) {
            const char *reason = dlerror();
            snprintf(error, error_size, "%s", reason != NULL ? reason : sonames[i]);
            continue;
        }
        struct multipack_zstd *api = calloc(1, sizeof *api);
        if (api == NULL) {
            snprintf(error, error_size, "out of memory");
            dlclose(library);
            return NULL;
        }
        // POSIX's sanctioned way to store a dlsym result in a function pointer. A DStream is a
        // DCtx since zstd 1.3.0.
        *(void **)(&api->create) = dlsym(library, "ZSTD_createDCtx");
        *(void **)(&api->free) = dlsym(library, "ZSTD_freeDCtx");
        *(void **)(&api->decompress) = dlsym(library, "ZSTD_decompressStream");
        *(void **)(&api->is_error) = dlsym(library, "ZSTD_isError");
        *(void **)(&api->error_name) = dlsym(library, "ZSTD_getErrorName");
        if (api->create && api->free && api->decompress && api->is_error && api->error_name) {
            return api;
        }
        snprintf(error, error_size, "%s lacks the streaming decompression functions", sonames[i]);
        free(api);
        dlclose(library);
    }
    return NULL;
}

static inline multipack_zstd_dctx *multipack_zstd_create(const struct multipack_zstd *api) {
    return api->create();
}

static inline void multipack_zstd_free(const struct multipack_zstd *api, multipack_zstd_dctx *context) {
    api->free(context);
}

/// One step of decompression. Returns zstd's hint (0 once a frame is complete and flushed), or
/// an error code that `multipack_zstd_is_error` recognises.
static inline size_t multipack_zstd_decompress(const struct multipack_zstd *api, multipack_zstd_dctx *context,
                                               multipack_zstd_out *output, multipack_zstd_in *input) {
    return api->decompress(context, output, input);
}

static inline unsigned multipack_zstd_is_error(const struct multipack_zstd *api, size_t code) {
    return api->is_error(code);
}

static inline const char *multipack_zstd_error_name(const struct multipack_zstd *api, size_t code) {
    return api->error_name(code);
}

#endif
