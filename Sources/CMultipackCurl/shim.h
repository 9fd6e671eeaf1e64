#ifndef MULTIPACK_CURL_SHIM_H
#define MULTIPACK_CURL_SHIM_H

// libcurl is not linked: it is loaded with dlopen on the first download, so that commands that
// never download (detect, release) do not pay for loading its dependency tree. Only the headers
// are used here, for the types and constants.
#include <curl/curl.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef size_t (*multipack_curl_data_callback)(char *data, size_t size, size_t count, void *owner);
typedef int (*multipack_curl_xferinfo_callback)(void *owner, curl_off_t dltotal, curl_off_t dlnow,
                                                curl_off_t ultotal, curl_off_t ulnow);

/// The libcurl entry points multipack uses, resolved with dlsym.
struct multipack_curl {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *handle);
    CURLcode (*easy_setopt)(CURL *handle, CURLoption option, ...);
    CURLcode (*easy_getinfo)(CURL *handle, CURLINFO info, ...);
    CURLcode (*easy_perform)(CURL *handle);
    const char *(*easy_strerror)(CURLcode code);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *string);
    void (*slist_free_all)(struct curl_slist *list);
};

/// Loads `soname` and resolves every entry point. Returns NULL and writes the reason into `error`
/// when the library or a symbol is missing. The table lives for the rest of the process.
static inline const struct multipack_curl *multipack_curl_load(const char *soname, char *error,
                                                               size_t error_size) {
    void *library = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        const char *reason = dlerror();
        snprintf(error, error_size, "%s", reason != NULL ? reason : soname);
        return NULL;
    }
    struct multipack_curl *api = calloc(1, sizeof *api);
    if (api == NULL) {
        snprintf(error, error_size, "out of memory");
        dlclose(library);
        return NULL;
    }
    // POSIX's sanctioned way to store a dlsym result in a function pointer.
#define MULTIPACK_CURL_SYMBOL(field, name)                                                        \
    *(void **)(&api->field) = dlsym(library, name);                                               \
    if (api->field == NULL) {                                                                     \
        snprintf(error, error_size, "%s has no symbol %s", soname, name);                         \
        free(api);                                                                                \
        dlclose(library);                                                                         \
        return NULL;                                                                              \
    }
    MULTIPACK_CURL_SYMBOL(global_init, "curl_global_init")
    MULTIPACK_CURL_SYMBOL(easy_init, "curl_easy_init")
    MULTIPACK_CURL_SYMBOL(easy_cleanup, "curl_easy_cleanup")
    MULTIPACK_CURL_SYMBOL(easy_setopt, "curl_easy_setopt")
    MULTIPACK_CURL_SYMBOL(easy_getinfo, "curl_easy_getinfo")
    MULTIPACK_CURL_SYMBOL(easy_perform, "curl_easy_perform")
    MULTIPACK_CURL_SYMBOL(easy_strerror, "curl_easy_strerror")
    MULTIPACK_CURL_SYMBOL(slist_append, "curl_slist_append")
    MULTIPACK_CURL_SYMBOL(slist_free_all, "curl_slist_free_all")
#undef MULTIPACK_CURL_SYMBOL
    return api;
}

static inline CURLcode multipack_curl_global_init(const struct multipack_curl *api) {
    return api->global_init(CURL_GLOBAL_DEFAULT);
}

static inline CURL *multipack_curl_easy_init(const struct multipack_curl *api) {
    return api->easy_init();
}

static inline void multipack_curl_easy_cleanup(const struct multipack_curl *api, CURL *handle) {
    api->easy_cleanup(handle);
}

static inline CURLcode multipack_curl_easy_perform(const struct multipack_curl *api, CURL *handle) {
    return api->easy_perform(handle);
}

static inline const char *multipack_curl_easy_strerror(const struct multipack_curl *api,
                                                       CURLcode code) {
    return api->easy_strerror(code);
}

static inline struct curl_slist *multipack_curl_slist_append(const struct multipack_curl *api,
                                                             struct curl_slist *list,
                                                             const char *string) {
    return api->slist_append(list, string);
}

static inline void multipack_curl_slist_free_all(const struct multipack_curl *api,
                                                 struct curl_slist *list) {
    api->slist_free_all(list);
}

// curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call: one typed wrapper
// per argument kind.

static inline CURLcode multipack_curl_setopt_long(const struct multipack_curl *api, CURL *handle,
                                                  CURLoption option, long value) {
    return api->easy_setopt(handle, option, value);
}

static inline CURLcode multipack_curl_setopt_string(const struct multipack_curl *api, CURL *handle,
                                                    CURLoption option, const char *value) {
    return api->easy_setopt(handle, option, value);
}

static inline CURLcode multipack_curl_setopt_pointer(const struct multipack_curl *api, CURL *handle,
                                                     CURLoption option, void *value) {
    return api->easy_setopt(handle, option, value);
}

static inline CURLcode multipack_curl_setopt_offset(const struct multipack_curl *api, CURL *handle,
                                                    CURLoption option, curl_off_t value) {
    return api->easy_setopt(handle, option, value);
}

static inline CURLcode multipack_curl_setopt_data_callback(const struct multipack_curl *api,
                                                           CURL *handle, CURLoption option,
                                                           multipack_curl_data_callback value) {
    return api->easy_setopt(handle, option, value);
}

static inline CURLcode multipack_curl_setopt_xferinfo_callback(
    const struct multipack_curl *api, CURL *handle, multipack_curl_xferinfo_callback value) {
    return api->easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, value);
}

/// Allows only http, https and file, and only http and https on redirects. CURLOPT_PROTOCOLS_STR
/// needs libcurl 7.85; older stacks (heroku-22 ships 7.81) only know the deprecated bitmask.
static inline CURLcode multipack_curl_restrict_protocols(const struct multipack_curl *api,
                                                         CURL *handle) {
    CURLcode code = api->easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https,file");
    if (code == CURLE_OK) {
        return api->easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    }
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wdeprecated-declarations"
    code = api->easy_setopt(handle, CURLOPT_PROTOCOLS,
                            (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS | CURLPROTO_FILE));
    if (code == CURLE_OK) {
        code = api->easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS,
                                (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    }
#pragma clang diagnostic pop
    return code;
}

static inline CURLcode multipack_curl_getinfo_long(const struct multipack_curl *api, CURL *handle,
                                                   CURLINFO info, long *value) {
    return api->easy_getinfo(handle, info, value);
}

static inline CURLcode multipack_curl_getinfo_string(const struct multipack_curl *api, CURL *handle,
                                                     CURLINFO info, const char **value) {
    return api->easy_getinfo(handle, info, value);
}

static inline CURLcode multipack_curl_getinfo_offset(const struct multipack_curl *api, CURL *handle,
                                                     CURLINFO info, curl_off_t *value) {
    return api->easy_getinfo(handle, info, value);
}

#endif
