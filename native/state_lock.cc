// fcntl(F_SETLK) rather than flock: F_GETLK tells who holds it. The process never opens the lock
// file twice (a POSIX lock is dropped when the process closes any descriptor of the file).
#include "state_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

namespace aitbc {

LockAttempt lockExclusive(const std::string& path) {
  LockAttempt r;
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    r.error = std::string("open ") + path + ": " + strerror(errno);
    return r;
  }
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd, F_SETLK, &fl) == 0) {
    // For people (`cat lock`); the kernel's record is the truth.
    std::string pid = std::to_string(static_cast<long>(getpid())) + "\n";
    if (ftruncate(fd, 0) == 0) {
      ssize_t n = pwrite(fd, pid.data(), pid.size(), 0);
      (void)n;
    }
    r.locked = true;
    r.fd = fd;
    return r;
  }
  int e = errno;
  if (e == EACCES || e == EAGAIN) {
    struct flock q;
    memset(&q, 0, sizeof q);
    q.l_type = F_WRLCK;
    q.l_whence = SEEK_SET;
    if (fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK) r.holderPid = static_cast<long>(q.l_pid);
  } else {
    r.error = std::string("lock ") + path + ": " + strerror(e);
  }
  close(fd);
  return r;
}

void unlock(int fd) {
  if (fd >= 0) close(fd);
}

}  // namespace aitbc
