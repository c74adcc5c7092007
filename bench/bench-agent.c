// SPDX-License-Identifier: MIT
/*
 * bench-agent: quiesce-agent against qemu-ga, measured in the same run.
 *
 * For each agent: start it on a unix socket, then measure
 *  - guest-ping round trip over N sequential requests (median, p99);
 *  - RSS (VmRSS) when idle, after 1000 requests, and after a hostile
 *    message just inside qemu-ga's limits (~63 MB, ~2M tokens: a list of
 *    1,040,000 60-byte strings), which both must parse and reject;
 *  - how long that hostile message takes to be answered.
 * Prints figures and ratios (ours / qemu-ga).  Never pass/fail.
 *
 * usage: bench-agent OURS_BINARY [QEMU_GA_BINARY] [N]
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct result {
	double median_us, p99_us;
	long rss_idle_kb, rss_1000_kb, rss_hostile_kb;
	double hostile_ms;
};

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static long rss_kb(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	for (int i = 0; i < 500; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		usleep(10000); /* qemu-ga has no readiness signal */
	}
	return -1;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read until `lines` newlines arrived; returns 0 or -1 on EOF/timeout. */
static int read_lines(int fd, int lines)
{
	char buf[65536];
	while (lines > 0) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 60000) <= 0)
			return -1;
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r <= 0)
			return -1;
		for (ssize_t i = 0; i < r; i++)
			lines -= buf[i] == '\n';
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static char *hostile_message(size_t *len)
{
	const size_t n = 1040000, item = 61; /* "<58 x a>", */
	size_t cap = n * item + 128;
	char *m = malloc(cap), *p = m;
	p += sprintf(p, "{\"execute\":\"guest-ping\",\"arguments\":{\"x\":[");
	for (size_t i = 0; i < n; i++) {
		*p++ = '"';
		memset(p, 'a', 58);
		p += 58;
		*p++ = '"';
		if (i + 1 < n)
			*p++ = ',';
	}
	p += sprintf(p, "]}}");
	*len = (size_t)(p - m);
	return m;
}

static int bench_one(const char *bin, int n, struct result *res)
{
	char dir[] = "/tmp/qbench-XXXXXX";
	if (!mkdtemp(dir))
		return -1;
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/sock", dir);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 1);
		dup2(null, 2);
		execl(bin, bin, "-m", "unix-listen", "-p", sock, "-t", dir, (char *)NULL);
		_exit(127);
	}
	int fd = connect_to(sock);
	if (fd < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	const char ping[] = "{\"execute\":\"guest-ping\"}";
	write_all(fd, ping, sizeof(ping) - 1);
	read_lines(fd, 1);
	usleep(200000);
	res->rss_idle_kb = rss_kb(pid);

	double *lat = calloc((size_t)n, sizeof(double));
	for (int i = 0; i < n; i++) {
		double t0 = now_us();
		write_all(fd, ping, sizeof(ping) - 1);
		if (read_lines(fd, 1) < 0)
			break;
		lat[i] = now_us() - t0;
		if (i == 999)
			res->rss_1000_kb = rss_kb(pid);
	}
	qsort(lat, (size_t)n, sizeof(double), cmp_double);
	res->median_us = lat[n / 2];
	res->p99_us = lat[(n * 99) / 100];
	free(lat);

	size_t len;
	char *m = hostile_message(&len);
	double t0 = now_us();
	write_all(fd, m, len);
	read_lines(fd, 1);
	res->hostile_ms = (now_us() - t0) / 1000.0;
	free(m);
	write_all(fd, ping, sizeof(ping) - 1);
	read_lines(fd, 1);
	usleep(300000);
	res->rss_hostile_kb = rss_kb(pid);

	close(fd);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	unlink(sock);
	rmdir(dir);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s OURS [QEMU_GA] [N]\n", argv[0]);
		return 2;
	}
	const char *ours = argv[1], *peer = argc > 2 ? argv[2] : "/usr/sbin/qemu-ga";
	int n = argc > 3 ? atoi(argv[3]) : 2000;
	struct result a = {0}, b = {0};
	if (bench_one(peer, n, &b) < 0 || bench_one(ours, n, &a) < 0) {
		fprintf(stderr, "bench-agent: could not start an agent\n");
		return 1;
	}
	printf("%-28s %14s %14s %8s\n", "metric", "quiesce-agent", "qemu-ga", "ratio");
	printf("%-28s %14.1f %14.1f %8.2f\n", "ping median (us)", a.median_us, b.median_us,
	       a.median_us / b.median_us);
	printf("%-28s %14.1f %14.1f %8.2f\n", "ping p99 (us)", a.p99_us, b.p99_us, a.p99_us / b.p99_us);
	printf("%-28s %14ld %14ld %8.2f\n", "RSS idle (KiB)", a.rss_idle_kb, b.rss_idle_kb,
	       (double)a.rss_idle_kb / (double)b.rss_idle_kb);
	printf("%-28s %14ld %14ld %8.2f\n", "RSS after 1000 req (KiB)", a.rss_1000_kb, b.rss_1000_kb,
	       (double)a.rss_1000_kb / (double)b.rss_1000_kb);
	printf("%-28s %14ld %14ld %8.2f\n", "RSS after hostile (KiB)", a.rss_hostile_kb,
	       b.rss_hostile_kb, (double)a.rss_hostile_kb / (double)b.rss_hostile_kb);
	printf("%-28s %14.0f %14.0f %8.2f\n", "hostile 63MB answered (ms)", a.hostile_ms, b.hostile_ms,
	       a.hostile_ms / b.hostile_ms);
	return 0;
}
