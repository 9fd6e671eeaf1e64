// dl_iterate_phdr is a GNU extension.
#define _GNU_SOURCE
#include "loader.h"

#include <link.h>
#include <string.h>
#include <sys/auxv.h>

struct listing {
    char *buffer;
    size_t room, length;
    /// Where the loader is mapped (AT_BASE; 0 in a static binary), and which pass this is.
    ElfW(Addr) loader;
    int loader_pass;
};

static void append(struct listing *listing, const char *text, size_t count) {
    if (listing->length < listing->room) {
        size_t left = listing->room - listing->length;
        memcpy(listing->buffer + listing->length, text, count < left ? count : left);
    }
    listing->length += count;
}

static int add_object(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct listing *listing = data;
    const char *name = info->dlpi_name;
    // The program itself has no name, the vDSO no path.
    if (name == NULL || name[0] != '/') return 0;
    int is_loader = listing->loader != 0 && info->dlpi_addr == listing->loader;
    if (is_loader != listing->loader_pass) return 0;
    append(listing, name, strlen(name));
    append(listing, "\n", 1);
    return listing->loader_pass;
}

size_t multipack_loaded_objects(char *buffer, size_t size) {
    struct listing listing = {buffer, size > 0 ? size - 1 : 0, 0, (ElfW(Addr))getauxval(AT_BASE), 1};
    if (listing.loader != 0) dl_iterate_phdr(add_object, &listing);
    if (listing.length == 0) append(&listing, "\n", 1);
    listing.loader_pass = 0;
    dl_iterate_phdr(add_object, &listing);
    if (size > 0) buffer[listing.length < listing.room ? listing.length : listing.room] = '\0';
    return listing.length;
}
