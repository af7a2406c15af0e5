// Bind the dl* calls to their oldest symbol versions, so that one prebuilt binary loads on every
// glibc a Node 20 host may have (2.28+), not only on the 2.34+ it was built on (where the dl*
// functions moved into libc with a new version). Include in every file that calls them.
#pragma once

#include <dlfcn.h>

#if defined(__GLIBC__) && defined(__x86_64__)
__asm__(".symver dlopen,dlopen@GLIBC_2.2.5");
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
__asm__(".symver dlclose,dlclose@GLIBC_2.2.5");
__asm__(".symver dlerror,dlerror@GLIBC_2.2.5");
__asm__(".symver dlinfo,dlinfo@GLIBC_2.3.3");
#endif
