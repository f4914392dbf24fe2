/* Cost per file-system operation, for scripts/bench --fs-ops: the same binary runs on the
 * host and in guests, so the table shows where a guest's time goes on the host's files.
 *
 * usage: fsops DIR     DIR: a large host folder of regular files (default /usr/bin)
 * prints: one line per operation: name, count, microseconds per operation
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_NAMES 4000

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void report(const char *name, int count, double start)
{
	printf("%-34s %6d %10.2f\n", name, count, (now_us() - start) / (count > 0 ? count : 1));
}

static char *names[MAX_NAMES];
static int n_names;

static void list(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d) {
		perror(dir);
		exit(1);
	}
	while ((e = readdir(d)) && n_names < MAX_NAMES) {
		if (e->d_name[0] == '.')
			continue;
		if (asprintf(&names[n_names], "%s/%s", dir, e->d_name) < 0)
			exit(1);
		n_names++;
	}
	closedir(d);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/usr/bin";
	struct stat st;
	char buf[4096], path[4200];
	double t;
	int i, n;

	t = now_us();
	for (i = 0; i < 20000; i++)
		syscall(SYS_getppid);
	report("system call (getppid)", 20000, t);

	/* The first listing and lookups of each name are cold in a fresh guest. */
	t = now_us();
	list(dir);
	report("readdir, first time (per entry)", n_names, t);

	t = now_us();
	for (i = 0; i < n_names; i++)
		lstat(names[i], &st);
	report("lstat, first time", n_names, t);

	t = now_us();
	for (i = 0; i < n_names; i++)
		lstat(names[i], &st);
	report("lstat, again", n_names, t);

	/* The same call on a file system of the guest's own, for comparison. */
	t = now_us();
	for (i = 0; i < n_names; i++)
		lstat("/proc/self/stat", &st);
	report("lstat in /proc (not hostfs)", n_names, t);

	t = now_us();
	for (i = 0; i < n_names; i++) {
		snprintf(path, sizeof(path), "%s/missing-%d", dir, i);
		lstat(path, &st);
	}
	report("lstat of a missing name, first", n_names, t);

	t = now_us();
	for (i = 0; i < n_names; i++) {
		snprintf(path, sizeof(path), "%s/missing-%d", dir, i);
		lstat(path, &st);
	}
	report("lstat of a missing name, again", n_names, t);

	t = now_us();
	for (n = 0; n < 200; n++) {
		DIR *d = opendir(dir);
		int count = 0;
		if (!d) {
			perror(dir);
			exit(1);
		}
		while (readdir(d))
			count++;
		closedir(d);
	}
	report("readdir of the folder, again", 200, t);

	/* The dynamic loader's own pattern: open, read a little, close. */
	for (int pass = 0; pass < 2; pass++) {
		n = 0;
		t = now_us();
		for (i = 0; i < n_names; i++) {
			int fd = open(names[i], O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			if (read(fd, buf, sizeof(buf)) >= 0)
				n++;
			close(fd);
		}
		report(pass ? "open+read 4K+close, again" : "open+read 4K+close, first time",
		       n ? n : 1, t);
	}

	t = now_us();
	for (i = 0; i < 100; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			execl("/bin/true", "true", (char *)NULL);
			_exit(127);
		}
		waitpid(pid, NULL, 0);
	}
	report("fork+exec /bin/true (dynamic)", 100, t);
	return 0;
}
