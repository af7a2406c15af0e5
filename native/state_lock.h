// One owner per state directory: a POSIX record lock on a file in it, held for the life of the
// process. The kernel drops it when the process dies however it dies (so a SIGKILL never leaves a
// stale lock), keeps it while the process is stopped, and names the holder's PID to a second one.
#pragma once

#include <string>

namespace aitbc {

struct LockAttempt {
  bool locked = false;
  int fd = -1;          // kept open while locked: closing it releases the lock
  long holderPid = -1;  // when held by another process (0 or -1: unknown, e.g. another PID namespace)
  std::string error;    // open/fcntl failure other than "held"
};

LockAttempt lockExclusive(const std::string& path);
void unlock(int fd);

}  // namespace aitbc
