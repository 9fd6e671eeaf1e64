#ifndef CMULTIPACK_LOADER_H
#define CMULTIPACK_LOADER_H

#include <stddef.h>

// multipack's own binary on another root than this machine's (a stack image): it runs there
// through this machine's loader, with the directories of its libraries bound at a private path.
// Swift reaches this through Sandbox/HostLoader.swift only.

/// The loaded objects of this process, as the loader found them: the loader's own path on the
/// first line (empty for a static binary), then every shared library's path (as its name was
/// found, symbolic links not resolved), one a line. Writes at most `size` bytes with a final
/// NUL and returns the length the whole list needs (more than `size` - 1: call again with more).
size_t multipack_loaded_objects(char *buffer, size_t size);

#endif
