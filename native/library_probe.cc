// dlopen + dlinfo + dlclose: the facts only; which libraries matter is decided in TypeScript.
#include "library_probe.h"

#include "dl_compat.h"
#include <link.h>

namespace aitbc {

LibraryProbe probeLibrary(const std::string& name) {
  LibraryProbe r;
  dlerror();
  void* h = dlopen(name.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (h == nullptr) {
    const char* e = dlerror();
    r.error = e != nullptr ? e : "dlopen failed";
    return r;
  }
  r.found = true;
  struct link_map* map = nullptr;
  if (dlinfo(h, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr)
    r.path = map->l_name;
  dlclose(h);
  return r;
}

}  // namespace aitbc
