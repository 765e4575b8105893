/*
 * tests/fuzz/fuzz_plugin_elf.c — libFuzzer harness for the conformance kit's reading of a plugin
 * file's exported symbols (kit_exported_symbols, tools/conformance/kit_elf.c), which parses the
 * ELF headers and dynamic symbol table of whatever file it is pointed at, without loading it.
 *
 * The input becomes an in-memory file (memfd) read through its /proc path. Anything but these
 * traps: the file is refused with a reason and no names, or read into names that are
 * NUL-terminated strings within the allocation (ASan checks each read).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif

#include "tools/conformance/kit.h"
#include "fuzz_require.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const int fd = memfd_create("plugin", 0);
    require(fd >= 0);
    require(size == 0 || write(fd, data, size) == (ssize_t)size);
    char path[64], why[512] = "";
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    char **names = NULL;
    uint32_t n = 0;
    if (kit_exported_symbols(path, &names, &n, why, sizeof why)) {
        for (uint32_t i = 0; i < n; i++) {
            require(names[i] != NULL);
            volatile size_t len = strlen(names[i]); /* ASan checks the read (volatile: kept) */
            (void)len;
            free(names[i]);
        }
        free(names);
    } else {
        require(names == NULL && n == 0 && why[0] != '\0');
    }
    close(fd);
    return 0;
}
