// What Swift's Glibc module leaves out because it is built without _GNU_SOURCE.
#include <stddef.h>

// A byte string inside another, in linear time (glibc's two-way search).
extern void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen);
