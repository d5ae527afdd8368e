/*
 * netvolfs: the simulated network volume of volume-cli's tests and benchmarks.
 *
 * A passthrough FUSE file system over a backing folder, on libfuse3's high-level API, that
 * sleeps --latency-ms in every operation (a network round trip) and counts operations by
 * kind. A unix socket (--control) answers one JSON request per line:
 *   {"op": "counts"}  wait until quiet, then the counts by kind
 *   {"op": "reset"}   wait until quiet, return the counts, zero them and the peak
 *   {"op": "peak"}    wait until quiet, then {"peak": N}: most operations in flight at once
 * with an optional "quiet": seconds (default --quiet-ms) the file system must have been idle,
 * since the kernel sends RELEASE after close() has returned. The wait is bounded by 10 s.
 *
 * Why C: a Python server (mfusepy) spent ~200 us of CPU per operation behind its GIL, so on a
 * small machine the simulator, not the code under test, set the pace and concurrent calls did
 * not overlap as they do on a real network file system, whose server runs elsewhere.
 *
 * The callbacks, their semantics and the libfuse options are those of the former Python
 * server (mfusepy, removed) so that operation budgets measured on it still hold:
 * callbacks it left unset (opendir, releasedir, getxattr, mknod, lock, ...) stay unset here,
 * so libfuse answers them itself, uncounted and without latency.
 *
 * Build: cc -O2 -Wall -Wextra netvolfs.c $(pkg-config --cflags --libs fuse3) -o netvolfs
 * (tests/netvol/mount.py does it on first use).
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum kind {
	K_GETATTR, K_READLINK, K_MKDIR, K_RMDIR, K_UNLINK, K_SYMLINK, K_LINK, K_RENAME,
	K_CHMOD, K_CHOWN, K_TRUNCATE, K_UTIMENS, K_ACCESS, K_OPEN, K_CREATE, K_READ,
	K_WRITE, K_FLUSH, K_RELEASE, K_FSYNC, K_READDIR, K_STATFS, K_KINDS
};

/* The names the control socket reports: the Python server's method names. */
static const char *const kind_names[K_KINDS] = {
	"getattr", "readlink", "mkdir", "rmdir", "unlink", "symlink", "link", "rename",
	"chmod", "chown", "truncate", "utimens", "access", "open", "create", "read",
	"write", "flush", "release", "fsync", "readdir", "statfs",
};

static struct {
	pthread_mutex_t lock;
	unsigned long long counts[K_KINDS];
	long in_flight;
	long peak;
	int64_t last_end_ns;
} tally = { .lock = PTHREAD_MUTEX_INITIALIZER };

static struct timespec latency;
static int latency_on;
/* --keep-cache: a file's page cache survives its next open (FOPEN_KEEP_CACHE), as mfsmount's default
 * cache mode keeps an unchanged file's; off, each open drops it (libfuse's default). */
static int keep_cache_on;
static int backing_fd = -1;
static char *backing_path;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void begin(enum kind kind)
{
	pthread_mutex_lock(&tally.lock);
	tally.counts[kind]++;
	tally.in_flight++;
	if (tally.in_flight > tally.peak)
		tally.peak = tally.in_flight;
	pthread_mutex_unlock(&tally.lock);
	if (latency_on) {
		struct timespec left = latency;
		while (nanosleep(&left, &left) == -1 && errno == EINTR)
			;
	}
}

/* Ends an operation and passes its result through, so every callback is one return line. */
static int end(int result)
{
	pthread_mutex_lock(&tally.lock);
	tally.in_flight--;
	tally.last_end_ns = now_ns();
	pthread_mutex_unlock(&tally.lock);
	return result;
}

static int status(int rc)
{
	return rc == -1 ? -errno : 0;
}

/* FUSE paths are absolute inside the mount; the *at() calls take them relative to the backing folder. */
static const char *rel(const char *path)
{
	while (*path == '/')
		path++;
	return *path ? path : ".";
}

/* backing + path for the two calls with no *at() form; NULL (errno ENOMEM) if it cannot be built. */
static char *joined(const char *path)
{
	size_t size = strlen(backing_path) + strlen(path) + 1;
	char *full = malloc(size);
	if (full)
		snprintf(full, size, "%s%s", backing_path, path);
	return full;
}

static int nv_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	begin(K_GETATTR);
	if (fi)
		return end(status(fstat((int)fi->fh, st)));
	return end(status(fstatat(backing_fd, rel(path), st, AT_SYMLINK_NOFOLLOW)));
}

static int nv_readlink(const char *path, char *buf, size_t size)
{
	begin(K_READLINK);
	if (size == 0)
		return end(-EINVAL);
	ssize_t n = readlinkat(backing_fd, rel(path), buf, size - 1);
	if (n == -1)
		return end(-errno);
	buf[n] = '\0';
	return end(0);
}

static int nv_mkdir(const char *path, mode_t mode)
{
	begin(K_MKDIR);
	return end(status(mkdirat(backing_fd, rel(path), mode)));
}

static int nv_rmdir(const char *path)
{
	begin(K_RMDIR);
	return end(status(unlinkat(backing_fd, rel(path), AT_REMOVEDIR)));
}

static int nv_unlink(const char *path)
{
	begin(K_UNLINK);
	return end(status(unlinkat(backing_fd, rel(path), 0)));
}

static int nv_symlink(const char *target, const char *link)
{
	begin(K_SYMLINK);
	return end(status(symlinkat(target, backing_fd, rel(link))));
}

static int nv_link(const char *from, const char *to)
{
	begin(K_LINK);
	return end(status(linkat(backing_fd, rel(from), backing_fd, rel(to), 0)));
}

/*
 * flags (RENAME_NOREPLACE, RENAME_EXCHANGE) are honoured: the Python server dropped them, so an
 * exchange became a plain rename that failed on a full folder or destroyed the other side.
 */
static int nv_rename(const char *from, const char *to, unsigned int flags)
{
	begin(K_RENAME);
	return end(status(renameat2(backing_fd, rel(from), backing_fd, rel(to), flags)));
}

static int nv_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)fi;
	begin(K_CHMOD);
	return end(status(fchmodat(backing_fd, rel(path), mode, 0)));
}

static int nv_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	(void)fi;
	begin(K_CHOWN);
	return end(status(fchownat(backing_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW)));
}

static int nv_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	begin(K_TRUNCATE);
	if (fi)
		return end(status(ftruncate((int)fi->fh, size)));
	char *full = joined(path);
	if (!full)
		return end(-ENOMEM);
	int rc = status(truncate(full, size));
	free(full);
	return end(rc);
}

/* On the link itself (a symlink's own times), like os.utime(follow_symlinks=False). */
static int nv_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	(void)fi;
	begin(K_UTIMENS);
	return end(status(utimensat(backing_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW)));
}

/* Like os.access(follow_symlinks=False): any failure, a missing file included, is EACCES. */
static int nv_access(const char *path, int mask)
{
	begin(K_ACCESS);
	return end(faccessat(backing_fd, rel(path), mask, AT_SYMLINK_NOFOLLOW) == -1 ? -EACCES : 0);
}

static int nv_open(const char *path, struct fuse_file_info *fi)
{
	begin(K_OPEN);
	int fd = openat(backing_fd, rel(path), fi->flags | O_CLOEXEC);
	if (fd == -1)
		return end(-errno);
	fi->fh = (uint64_t)fd;
	fi->keep_cache = keep_cache_on;
	return end(0);
}

static int nv_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	begin(K_CREATE);
	int fd = openat(backing_fd, rel(path), fi->flags | O_CREAT | O_CLOEXEC, mode);
	if (fd == -1)
		return end(-errno);
	fi->fh = (uint64_t)fd;
	return end(0);
}

static int nv_read(const char *path, char *buf, size_t size, off_t offset, struct fuse_file_info *fi)
{
	(void)path;
	begin(K_READ);
	ssize_t n = pread((int)fi->fh, buf, size, offset);
	return end(n == -1 ? -errno : (int)n);
}

static int nv_write(const char *path, const char *buf, size_t size, off_t offset, struct fuse_file_info *fi)
{
	(void)path;
	begin(K_WRITE);
	ssize_t n = pwrite((int)fi->fh, buf, size, offset);
	return end(n == -1 ? -errno : (int)n);
}

/* Nothing is buffered here, but a FLUSH still costs a round trip on a network file system. */
static int nv_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	begin(K_FLUSH);
	return end(0);
}

static int nv_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	begin(K_RELEASE);
	return end(status(close((int)fi->fh)));
}

static int nv_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	begin(K_FSYNC);
	return end(status(datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh)));
}

/* Names only, no attributes (types unknown), like the Python server's list of names. */
static int nv_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)offset;
	(void)fi;
	(void)flags;
	begin(K_READDIR);
	int fd = openat(backing_fd, rel(path), O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1)
		return end(-errno);
	DIR *dir = fdopendir(fd);
	if (!dir) {
		int error = errno;
		close(fd);
		return end(-error);
	}
	/* A full buffer (filler returns 1) ends the listing without an error, as in mfusepy. */
	int rc = 0;
	int full = filler(buf, ".", NULL, 0, 0) || filler(buf, "..", NULL, 0, 0);
	while (!full) {
		errno = 0;
		struct dirent *entry = readdir(dir);
		if (!entry) {
			rc = -errno;
			break;
		}
		const char *name = entry->d_name;
		if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
			full = filler(buf, name, NULL, 0, 0);
	}
	closedir(dir);
	return end(rc);
}

static int nv_statfs(const char *path, struct statvfs *st)
{
	begin(K_STATFS);
	char *full = joined(path);
	if (!full)
		return end(-ENOMEM);
	int rc = status(statvfs(full, st));
	free(full);
	return end(rc);
}

static const struct fuse_operations operations = {
	.getattr = nv_getattr,
	.readlink = nv_readlink,
	.mkdir = nv_mkdir,
	.unlink = nv_unlink,
	.rmdir = nv_rmdir,
	.symlink = nv_symlink,
	.rename = nv_rename,
	.link = nv_link,
	.chmod = nv_chmod,
	.chown = nv_chown,
	.truncate = nv_truncate,
	.open = nv_open,
	.read = nv_read,
	.write = nv_write,
	.statfs = nv_statfs,
	.flush = nv_flush,
	.release = nv_release,
	.fsync = nv_fsync,
	.readdir = nv_readdir,
	.access = nv_access,
	.create = nv_create,
	.utimens = nv_utimens,
};

/* ---- the control socket ---- */

static double default_quiet = 0.030;

static void sleep_seconds(double seconds)
{
	if (seconds < 0.0001)
		seconds = 0.0001; /* a quiet of 0 would otherwise spin on the lock */
	struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
	nanosleep(&ts, NULL);
}

/*
 * Wait until nothing is in flight and nothing ended for `quiet` seconds (at most 10 s, so a
 * busy caller still gets an answer); then copy the counts, zeroing them and the peak on reset.
 */
static long settle(double quiet, int reset, unsigned long long snapshot[K_KINDS])
{
	int64_t quiet_ns = (int64_t)(quiet * 1e9);
	int64_t deadline = now_ns() + (int64_t)10 * 1000000000;
	while (now_ns() < deadline) {
		pthread_mutex_lock(&tally.lock);
		int idle = tally.in_flight == 0 && now_ns() - tally.last_end_ns >= quiet_ns;
		pthread_mutex_unlock(&tally.lock);
		if (idle)
			break;
		sleep_seconds(quiet / 4);
	}
	pthread_mutex_lock(&tally.lock);
	memcpy(snapshot, tally.counts, sizeof(tally.counts));
	long peak = tally.peak;
	if (reset) {
		memset(tally.counts, 0, sizeof(tally.counts));
		tally.peak = 0;
	}
	pthread_mutex_unlock(&tally.lock);
	return peak;
}

/* The string value of "key" in a flat JSON object, copied into out (truncated to size). */
static int json_string(const char *line, const char *key, char *out, size_t size)
{
	const char *at = strstr(line, key);
	if (!at)
		return 0;
	at += strlen(key);
	at += strspn(at, " \t:");
	if (*at != '"')
		return 0;
	at++;
	size_t length = strcspn(at, "\"");
	if (length >= size)
		length = size - 1;
	memcpy(out, at, length);
	out[length] = '\0';
	return 1;
}

static void answer(int connection, const char *request)
{
	char op[32] = "counts";
	json_string(request, "\"op\"", op, sizeof(op));
	double quiet = default_quiet;
	const char *at = strstr(request, "\"quiet\"");
	if (at)
		quiet = strtod(at + strlen("\"quiet\"") + strspn(at + strlen("\"quiet\""), " \t:"), NULL);
	unsigned long long counts[K_KINDS];
	long peak = settle(quiet, strcmp(op, "reset") == 0, counts);
	/* Bounded: K_KINDS names under 10 characters and 20-digit numbers. */
	char reply[K_KINDS * 40 + 64];
	size_t used = 0;
	if (strcmp(op, "peak") == 0) {
		used = (size_t)snprintf(reply, sizeof(reply), "{\"peak\": %ld}\n", peak);
	} else {
		used += (size_t)snprintf(reply + used, sizeof(reply) - used, "{");
		for (int kind = 0; kind < K_KINDS; kind++) {
			if (counts[kind] == 0)
				continue; /* like a Counter: only the kinds that happened */
			used += (size_t)snprintf(reply + used, sizeof(reply) - used, "%s\"%s\": %llu",
						 used > 1 ? ", " : "", kind_names[kind], counts[kind]);
		}
		used += (size_t)snprintf(reply + used, sizeof(reply) - used, "}\n");
	}
	for (size_t sent = 0; sent < used;) {
		ssize_t n = send(connection, reply + sent, used - sent, MSG_NOSIGNAL);
		if (n <= 0)
			return;
		sent += (size_t)n;
	}
}

/* One connection at a time, one JSON request per line, until the process ends. */
static void *serve_control(void *arg)
{
	int server = (int)(intptr_t)arg;
	for (;;) {
		int connection = accept(server, NULL, NULL);
		if (connection == -1)
			continue;
		FILE *stream = fdopen(connection, "r");
		if (!stream) {
			close(connection);
			continue;
		}
		char *line = NULL;
		size_t capacity = 0;
		while (getline(&line, &capacity, stream) != -1)
			answer(connection, line);
		free(line);
		fclose(stream);
	}
	return NULL;
}

static int start_control(const char *path)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(address.sun_path)) {
		fprintf(stderr, "netvolfs: control socket path too long (max %zu bytes): %s\n",
			sizeof(address.sun_path) - 1, path);
		return -1;
	}
	strcpy(address.sun_path, path);
	int server = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (server == -1 || bind(server, (struct sockaddr *)&address, sizeof(address)) == -1 ||
	    listen(server, 8) == -1) {
		perror("netvolfs: control socket");
		return -1;
	}
	pthread_t thread;
	if (pthread_create(&thread, NULL, serve_control, (void *)(intptr_t)server) != 0) {
		fprintf(stderr, "netvolfs: cannot start the control thread\n");
		return -1;
	}
	pthread_detach(thread);
	return 0;
}

/* ---- the command line: the Python server's ---- */

struct options {
	const char *backing;
	const char *mountpoint;
	const char *control;
	double latency_ms;
	double cache_seconds;
	long max_threads;
	double quiet_ms;
	int keep_cache;
};

static void usage(FILE *out)
{
	fprintf(out, "usage: netvolfs BACKING MOUNTPOINT --control SOCKET [--latency-ms 1] "
		     "[--cache-seconds 1] [--max-threads 64] [--quiet-ms 30] [--keep-cache]\n");
}

/* "--name VALUE" or "--name=VALUE"; returns the value or NULL when argv[*i] is not --name. */
static const char *option_value(int argc, char **argv, int *i, const char *name)
{
	size_t length = strlen(name);
	if (strncmp(argv[*i], name, length) != 0)
		return NULL;
	if (argv[*i][length] == '=')
		return argv[*i] + length + 1;
	if (argv[*i][length] != '\0' || *i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

static int parse_options(int argc, char **argv, struct options *o)
{
	*o = (struct options){ .latency_ms = 1.0, .cache_seconds = 1.0, .max_threads = 64, .quiet_ms = 30.0 };
	for (int i = 1; i < argc; i++) {
		const char *value;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if ((value = option_value(argc, argv, &i, "--control"))) {
			o->control = value;
		} else if (strcmp(argv[i], "--keep-cache") == 0) {
			o->keep_cache = 1;
		} else if ((value = option_value(argc, argv, &i, "--latency-ms"))) {
			o->latency_ms = strtod(value, NULL);
		} else if ((value = option_value(argc, argv, &i, "--cache-seconds"))) {
			o->cache_seconds = strtod(value, NULL);
		} else if ((value = option_value(argc, argv, &i, "--max-threads"))) {
			o->max_threads = strtol(value, NULL, 10);
		} else if ((value = option_value(argc, argv, &i, "--quiet-ms"))) {
			o->quiet_ms = strtod(value, NULL);
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "netvolfs: unknown option or missing value: %s\n", argv[i]);
			return -1;
		} else if (!o->backing) {
			o->backing = argv[i];
		} else if (!o->mountpoint) {
			o->mountpoint = argv[i];
		} else {
			fprintf(stderr, "netvolfs: unexpected argument: %s\n", argv[i]);
			return -1;
		}
	}
	if (!o->backing || !o->mountpoint || !o->control || o->max_threads < 1) {
		usage(stderr);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	if (parse_options(argc, argv, &o) != 0)
		return 2;
	backing_path = realpath(o.backing, NULL);
	if (!backing_path || (backing_fd = open(backing_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		perror(o.backing);
		return 1;
	}
	if (o.latency_ms > 0) {
		double seconds = o.latency_ms / 1000;
		latency.tv_sec = (time_t)seconds;
		latency.tv_nsec = (long)((seconds - (double)latency.tv_sec) * 1e9);
		latency_on = 1;
	}
	default_quiet = o.quiet_ms / 1000;
	keep_cache_on = o.keep_cache;
	tally.last_end_ns = now_ns();
	if (start_control(o.control) != 0)
		return 1;
	/* The options mfusepy passed: max_idle_threads too, or libfuse 3.14 warns about its default. */
	char fuse_options[256];
	snprintf(fuse_options, sizeof(fuse_options),
		 "fsname=netvol,max_threads=%ld,max_idle_threads=%ld,entry_timeout=%g,attr_timeout=%g,"
		 "negative_timeout=%g",
		 o.max_threads, o.max_threads, o.cache_seconds, o.cache_seconds, o.cache_seconds);
	char *fuse_argv[] = { argv[0], "-f", "-o", fuse_options, (char *)o.mountpoint, NULL };
	return fuse_main(5, fuse_argv, &operations, NULL);
}
