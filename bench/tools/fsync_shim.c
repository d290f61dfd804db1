// librelais_fsync_shim.so: an LD_PRELOAD shim that makes a receiver that does
// not fsync (DCMTK storescp) flush every file it wrote before closing it, so
// that bench/e2e_ingest.sh can compare Relais (which acknowledges only after an
// fsync'd commit) with a naive "write a file, fsync it, answer" receiver.
//
//   LD_PRELOAD=BUILD/bench/librelais_fsync_shim.so storescp ...
//
// It wraps close() and fclose() (fclose closes its descriptor inside glibc,
// not through the close() symbol, so both are needed). A descriptor is
// fsync'd if fstat() says it is a regular file (S_ISREG) and fcntl(F_GETFL)
// says it was opened for writing (O_WRONLY or O_RDWR). Sockets, pipes and
// files opened read-only pass through untouched. fclose() first fflush()es
// the stream so that the buffered tail is in the file before the fsync. Only
// the file is fsync'd, not its directory (storescp does not rename, and this is
// what "fsync each file before close" means for the benchmark).
//
// If RELAIS_FSYNC_SHIM_LOG names a path prefix, each process that fsyncs
// keeps the number of files it fsync'd in PREFIX.PID (rewritten in place
// after every fsync: one small pwrite into the page cache next to an fsync
// that waits for the device), so that the benchmark can check that the shim
// was loaded and did its job, also for storescp --fork children and for a
// receiver stopped by a signal.
// Written in C on purpose: it runs inside a foreign process, before and after
// its C++ runtime, and must not bring a runtime of its own.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static atomic_long fsyncs;
static int count_fd = -1;
static pid_t count_pid;

static int RealClose(int fd) {
  static int (*real_close)(int);
  if (real_close == NULL) real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
  return real_close(fd);
}

static void WriteCount(long n) {
  const char* prefix = getenv("RELAIS_FSYNC_SHIM_LOG");
  if (prefix == NULL || prefix[0] == '\0') return;
  pid_t pid = getpid();
  if (count_fd < 0 || count_pid != pid) {  // first fsync of this process (a forked child starts afresh)
    if (count_fd >= 0) RealClose(count_fd);
    char path[4096];
    snprintf(path, sizeof(path), "%s.%ld", prefix, (long)pid);
    count_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    count_pid = pid;
    if (count_fd < 0) return;
  }
  char line[32];
  int len = snprintf(line, sizeof(line), "%20ld\n", n);
  if (len > 0) {
    ssize_t w = pwrite(count_fd, line, (size_t)len, 0);
    (void)w;
  }
}

static int OpenForWritingRegular(int fd) {
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  int fl = fcntl(fd, F_GETFL);
  return fl != -1 && (fl & O_ACCMODE) != O_RDONLY;
}

static void SyncIfWritten(int fd) {
  if (!OpenForWritingRegular(fd)) return;
  // The receiver's close() would not report a failed flush either; a failed
  // fsync here only means this run measured less than it claims, so say so.
  if (fsync(fd) != 0) {
    perror("relais_fsync_shim: fsync");
    return;
  }
  // The count file itself is never fsync'd: it is not what is measured.
  WriteCount(atomic_fetch_add(&fsyncs, 1) + 1);
}

int close(int fd) {
  if (fd != count_fd || count_pid != getpid()) SyncIfWritten(fd);
  return RealClose(fd);
}

int fclose(FILE* f) {
  static int (*real_fclose)(FILE*);
  if (real_fclose == NULL) real_fclose = (int (*)(FILE*))dlsym(RTLD_NEXT, "fclose");
  if (f != NULL) {
    int fd = fileno(f);
    if (OpenForWritingRegular(fd)) {
      fflush(f);
      SyncIfWritten(fd);
    }
  }
  return real_fclose(f);
}
