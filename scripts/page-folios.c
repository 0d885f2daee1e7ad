/* page-folios FILE: how the page cache holds FILE's pages, for bench-mount.
 *
 * Maps FILE, touches every page (so the pages already in the page cache are
 * mapped; pages not cached are read in), then looks each one up in
 * /proc/self/pagemap and /proc/kpageflags (root) and prints one line:
 *   "262144 pages: 0% in large folios (order-0 only)"
 *   "262144 pages: 88% in large folios, largest order 9"
 * A re-read of a file whose cache is order-0 pages does 512 times the
 * per-folio work of one held in order-9 folios.
 * Build: cc -O2 page-folios.c -o page-folios
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define KPF_COMPOUND_HEAD 15
#define KPF_COMPOUND_TAIL 16

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: page-folios FILE\n");
    return 2;
  }
  int fd = open(argv[1], O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
    perror(argv[1]);
    return 1;
  }
  const long page = sysconf(_SC_PAGESIZE);
  const size_t pages = (size_t)(st.st_size + page - 1) / (size_t)page;
  volatile const char *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  int pagemap = open("/proc/self/pagemap", O_RDONLY);
  int kflags = open("/proc/kpageflags", O_RDONLY);
  if (p == MAP_FAILED || pagemap < 0 || kflags < 0) {
    perror("page-folios: mmap, /proc/self/pagemap or /proc/kpageflags");
    return 1;
  }
  size_t large = 0, run = 0;
  int max_order = 0;
  for (size_t i = 0; i <= pages; ++i) {
    int head = 1, tail = 0;
    if (i < pages) {
      (void)p[i * (size_t)page];
      uint64_t entry = 0, flags = 0;
      if (pread(pagemap, &entry, 8, (off_t)(((uintptr_t)p / (uintptr_t)page + i) * 8)) != 8 ||
          pread(kflags, &flags, 8, (off_t)((entry & ((1ULL << 55) - 1)) * 8)) != 8) {
        perror("page-folios: reading page flags");
        return 1;
      }
      head = (int)(flags >> KPF_COMPOUND_HEAD) & 1;
      tail = (int)(flags >> KPF_COMPOUND_TAIL) & 1;
      large += (size_t)(head | tail);
    }
    if (tail) {
      ++run;
      continue;
    }
    int order = 0; /* the folio that just ended had `run` pages */
    while ((1UL << order) < run) ++order;
    if (order > max_order) max_order = order;
    run = head;
  }
  if (large == 0)
    printf("%zu pages: 0%% in large folios (order-0 only)\n", pages);
  else
    printf("%zu pages: %zu%% in large folios, largest order %d\n", pages, large * 100 / pages,
           max_order);
  return 0;
}
