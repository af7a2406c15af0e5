// Can this process load a shared library? dlopen it (lazily, locally), note where the loader found
// it or why not, and close it again. How `run` and `doctor` tell which CUDA runtime library a GPU
// backend lacks, with the loader's own search (LD_LIBRARY_PATH, ld.so.cache, RUNPATH-free).
#pragma once

#include <string>

namespace aitbc {

struct LibraryProbe {
  bool found = false;
  std::string path;   // where the loader found it (empty when not found)
  std::string error;  // dlerror() text when not found
};

LibraryProbe probeLibrary(const std::string& name);

}  // namespace aitbc
