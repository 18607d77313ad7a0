/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Load generator of the benchmarks, in C so that it is never what limits
 * the rate. Every mode talks to 127.0.0.1:PORT.
 *
 *   sb-bench-load tcp PORT CLIENTS FRAMES SIZE
 *       CLIENTS connections share FRAMES frames of SIZE bytes ("x…x\r\n"),
 *       written in blocks of about 64 KiB as fast as the kernel takes them.
 *   sb-bench-load udp PORT FRAMES SIZE [--progress FILE --window W]
 *       one datagram per frame from one socket; with --progress, keeps at
 *       most W frames ahead of the count a subscriber writes to FILE, so
 *       the daemon's socket buffer does not overflow and drop datagrams.
 *   sb-bench-load rtt PORT[,PORT...] COUNT SIZE [BLOCK]
 *       one connection per port: COUNT times, send a frame and wait for it
 *       to come back, BLOCK (1) round trips on a port before the next
 *       port; prints the round trip's percentiles, with several ports a
 *       line per port ("port=P …").
 *   sb-bench-load hold PORT COUNT
 *       opens COUNT connections, reports how long that took, then answers
 *       "check" lines on stdin with how many are still open.
 *   sb-bench-load tls PORT CLIENTS FRAMES SIZE
 *       as tcp, over TLS (GIO's GTlsClientConnection, any server
 *       certificate accepted): completes every handshake, prints "ready",
 *       and starts writing when a "go" line comes on stdin, so that the
 *       caller can leave the handshakes out of what it measures. One
 *       thread per client, each blocked in its writes while the daemon
 *       is behind. Its report adds cpu_us, the CPU time the writing took
 *       (getrusage: its threads are gone by then, and with them their
 *       /proc/PID/task entries).
 *   sb-bench-load tls-hold PORT COUNT
 *       opens COUNT TLS connections, each with its handshake completed,
 *       reports how long that took, and leaves them idle.
 *
 * tcp, udp, hold, tls and tls-hold keep their sockets open until stdin
 * ends. Times are CLOCK_MONOTONIC microseconds, as g_get_monotonic_time(). */
#define G_LOG_DOMAIN "sb-bench"

#include <gio/gio.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sb-bench-util.h"

#define BLOCK_BYTES (64 * 1024)
#define MAX_PENDING_CONNECTS 512
/* Handshakes in flight at once in tls-hold: the daemon does its side in
 * GIO's thread pool, so a few in parallel keep both cores busy. */
#define TLS_HOLD_THREADS 4

typedef struct
{
  int     fd;
  guint64 left;     /* bytes still to write */
  gsize   offset;   /* position in the block */
} Writer;

static guint16
parse_port (const char *text)
{
  return (guint16) CLAMP (sb_bench_parse_uint (text, "PORT"), 1, G_MAXUINT16);
}

static struct sockaddr_in
loopback (guint16 port)
{
  struct sockaddr_in address = { 0 };

  address.sin_family = AF_INET;
  address.sin_port = htons (port);
  address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  return address;
}

static int
connect_tcp (guint16 port)
{
  struct sockaddr_in address = loopback (port);
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;

  if (fd < 0)
    sb_bench_die ("socket", g_strerror (errno));
  if (connect (fd, (struct sockaddr *) &address, sizeof address) != 0)
    sb_bench_die ("connect", g_strerror (errno));
  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void
set_nonblocking (int fd)
{
  fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK);
}

/* Blocks until stdin ends, so the sockets stay open as long as the caller
 * wants. */
static void
wait_stdin_end (void)
{
  char line[64];

  while (fgets (line, sizeof line, stdin) != NULL)
    ;
}

static guint8 *
make_block (gsize  size,
            gsize *block_len)
{
  gsize n = MAX (BLOCK_BYTES / size, 1);
  g_autofree guint8 *frame = sb_bench_make_frame (size);
  guint8 *block = g_malloc (n * size);

  for (gsize i = 0; i < n; i++)
    memcpy (block + i * size, frame, size);
  *block_len = n * size;
  return block;
}

/* One write of what fits; FALSE once the writer is done. */
static gboolean
write_some (Writer       *w,
            const guint8 *block,
            gsize         block_len)
{
  gsize len = MIN ((guint64) (block_len - w->offset), w->left);
  gssize n = write (w->fd, block + w->offset, len);

  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return TRUE;
  if (n < 0)
    sb_bench_die ("write", g_strerror (errno));
  w->left -= n;
  w->offset = (w->offset + n) % block_len;
  return w->left > 0;
}

static void
flood_tcp (Writer       *writers,
           guint         n_writers,
           const guint8 *block,
           gsize         block_len)
{
  g_autofree struct pollfd *fds = g_new0 (struct pollfd, n_writers);
  g_autofree guint *index = g_new0 (guint, n_writers);
  guint active = n_writers;

  for (guint i = 0; i < n_writers; i++)
    index[i] = i;
  while (active > 0) {
    for (guint i = 0; i < active; i++) {
      fds[i].fd = writers[index[i]].fd;
      fds[i].events = POLLOUT;
    }
    if (poll (fds, active, -1) < 0 && errno != EINTR)
      sb_bench_die ("poll", g_strerror (errno));
    for (guint i = active; i-- > 0;) {
      if ((fds[i].revents & (POLLOUT | POLLERR | POLLHUP)) == 0)
        continue;
      if (!write_some (&writers[index[i]], block, block_len))
        index[i] = index[--active];
    }
  }
}

static int
run_tcp (guint16 port,
         guint   clients,
         guint64 frames,
         gsize   size)
{
  g_autofree Writer *writers = g_new0 (Writer, clients);
  g_autofree guint8 *block = NULL;
  gsize block_len;
  gint64 start, end;

  block = make_block (size, &block_len);
  for (guint i = 0; i < clients; i++) {
    writers[i].fd = connect_tcp (port);
    writers[i].left = (frames / clients + (i < frames % clients ? 1 : 0)) * size;
    set_nonblocking (writers[i].fd);
  }
  start = g_get_monotonic_time ();
  flood_tcp (writers, clients, block, block_len);
  end = g_get_monotonic_time ();
  printf ("sent_frames=%" G_GUINT64_FORMAT " start_us=%" G_GINT64_FORMAT
          " end_us=%" G_GINT64_FORMAT "\n", frames, start, end);
  fflush (stdout);
  wait_stdin_end ();
  return 0;
}

static int
run_udp (guint16     port,
         guint64     frames,
         gsize       size,
         const char *progress_path,
         guint64     window)
{
  struct sockaddr_in address = loopback (port);
  g_autofree guint8 *frame = sb_bench_make_frame (size);
  const guint64 *progress = progress_path ? sb_bench_map_progress (progress_path, FALSE) : NULL;
  int fd = socket (AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  gint64 start, end;

  if (fd < 0 || connect (fd, (struct sockaddr *) &address, sizeof address) != 0)
    sb_bench_die ("udp socket", g_strerror (errno));
  prctl (PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  start = g_get_monotonic_time ();
  for (guint64 i = 0; i < frames; i++) {
    sb_bench_pace (progress, i, window);
    if (send (fd, frame, size, 0) < 0 && errno != ECONNREFUSED)
      sb_bench_die ("send", g_strerror (errno));
  }
  end = g_get_monotonic_time ();
  printf ("sent_frames=%" G_GUINT64_FORMAT " start_us=%" G_GINT64_FORMAT
          " end_us=%" G_GINT64_FORMAT "\n", frames, start, end);
  fflush (stdout);
  wait_stdin_end ();
  close (fd);
  return 0;
}

static void
read_exactly (int     fd,
              guint8 *buf,
              gsize   len)
{
  gsize got = 0;

  while (got < len) {
    struct pollfd pfd = { fd, POLLIN, 0 };
    gssize n;

    if (poll (&pfd, 1, 5000) == 0)
      sb_bench_die ("rtt", "no echo within 5 s");
    n = read (fd, buf + got, len - got);
    if (n <= 0)
      sb_bench_die ("rtt read", n == 0 ? "connection closed" : g_strerror (errno));
    got += n;
  }
}


/* One frame out and back on fd: how long it took, in nanoseconds. */
static gint64
round_trip (int           fd,
            const guint8 *frame,
            guint8       *echo,
            gsize         size)
{
  gint64 t0 = sb_bench_now_ns ();

  if (write (fd, frame, size) != (gssize) size)
    sb_bench_die ("rtt write", g_strerror (errno));
  read_exactly (fd, echo, size);
  return sb_bench_now_ns () - t0;
}

/* The first rounds warm the path up (allocations, caches) and are not
 * counted. With several ports, one connection to each, taken in turn BLOCK
 * round trips at a time: whatever moves the machine meanwhile moves all of
 * them alike, while each path runs in its own steady state, as when one
 * device talks to it alone. */
static int
run_rtt (const char *ports_text,
         guint       count,
         gsize       size,
         guint       block)
{
  const guint warmup = 20;
  g_auto (GStrv) ports = g_strsplit (ports_text, ",", -1);
  guint n_ports = g_strv_length (ports);
  g_autofree guint8 *frame = sb_bench_make_frame (size);
  g_autofree guint8 *echo = g_malloc (size);
  g_autofree int *fds = g_new (int, MAX (n_ports, 1));
  g_autofree gint64 *samples = g_new (gint64, (gsize) MAX (count, 1) * MAX (n_ports, 1));

  if (n_ports == 0)
    sb_bench_die ("rtt", "no PORT");
  block = CLAMP (block, 1, MAX (count, 1));
  for (guint p = 0; p < n_ports; p++)
    fds[p] = connect_tcp (parse_port (ports[p]));
  for (guint p = 0; p < n_ports; p++)
    for (guint i = 0; i < warmup; i++)
      round_trip (fds[p], frame, echo, size);
  for (guint first = 0; first < count; first += block) {
    for (guint p = 0; p < n_ports; p++) {
      for (guint i = first; i < MIN (first + block, count); i++)
        samples[(gsize) p * count + i] = round_trip (fds[p], frame, echo, size);
    }
  }
  for (guint p = 0; p < n_ports && count > 0; p++) {
    if (n_ports > 1)
      printf ("port=%s ", ports[p]);
    sb_bench_print_rtt (samples + (gsize) p * count, count);
  }
  fflush (stdout);
  for (guint p = 0; p < n_ports; p++)
    close (fds[p]);
  return 0;
}

/* Starts non-blocking connects until @fds has @count, keeping at most
 * MAX_PENDING_CONNECTS in flight; returns how many failed. */
static guint
open_many (guint16  port,
           int     *fds,
           guint    count)
{
  struct sockaddr_in address = loopback (port);
  g_autofree struct pollfd *pending = g_new0 (struct pollfd, MAX_PENDING_CONNECTS);
  guint started = 0, n_pending = 0, failed = 0;

  while (started < count || n_pending > 0) {
    while (started < count && n_pending < MAX_PENDING_CONNECTS) {
      int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

      if (fd < 0)
        sb_bench_die ("socket", g_strerror (errno));
      fds[started++] = fd;
      if (connect (fd, (struct sockaddr *) &address, sizeof address) == 0)
        continue;
      if (errno != EINPROGRESS)
        sb_bench_die ("connect", g_strerror (errno));
      pending[n_pending++] = (struct pollfd) { fd, POLLOUT, 0 };
    }
    if (poll (pending, n_pending, 10000) <= 0)
      sb_bench_die ("connect", "no progress within 10 s");
    for (guint i = n_pending; i-- > 0;) {
      int error = 0;
      socklen_t len = sizeof error;

      if (pending[i].revents == 0)
        continue;
      getsockopt (pending[i].fd, SOL_SOCKET, SO_ERROR, &error, &len);
      if (error != 0)
        failed++;
      pending[i] = pending[--n_pending];
    }
  }
  return failed;
}

/* A connection is closed when the daemon closed it (EOF or reset). */
static guint
count_closed (const int *fds,
              guint      count)
{
  guint closed = 0;

  for (guint i = 0; i < count; i++) {
    char byte;
    gssize n = recv (fds[i], &byte, 1, MSG_PEEK | MSG_DONTWAIT);

    if (n == 0 || (n < 0 && errno != EAGAIN))
      closed++;
  }
  return closed;
}

/* Closing with a reset leaves no TIME_WAIT behind to use up local ports. */
static void
close_all (const int *fds,
           guint      count)
{
  struct linger reset = { 1, 0 };

  for (guint i = 0; i < count; i++) {
    setsockopt (fds[i], SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    close (fds[i]);
  }
}

static int
run_hold (guint16 port,
          guint   count)
{
  g_autofree int *fds = g_new0 (int, count);
  gint64 start, done;
  guint failed;
  char line[64];

  sb_bench_raise_nofile ();
  start = g_get_monotonic_time ();
  failed = open_many (port, fds, count);
  done = g_get_monotonic_time ();
  printf ("start_us=%" G_GINT64_FORMAT " done_us=%" G_GINT64_FORMAT " ok=%u failed=%u\n",
          start, done, count - failed, failed);
  fflush (stdout);
  while (fgets (line, sizeof line, stdin) != NULL) {
    guint closed = count_closed (fds, count);

    printf ("open=%u closed=%u\n", count - closed, closed);
    fflush (stdout);
  }
  close_all (fds, count);
  return 0;
}

/* The bench's certificate is self-signed, made for the run: nothing to
 * verify it against, and nothing to protect on the loopback. */
static gboolean
accept_any_certificate (GTlsConnection       *connection,
                        GTlsCertificate      *certificate,
                        GTlsCertificateFlags  errors,
                        gpointer              user_data)
{
  return TRUE;
}

static GIOStream *
connect_tls (guint16 port)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GSocketConnection) tcp = NULL;
  g_autoptr(GIOStream) tls = NULL;

  tcp = g_socket_client_connect_to_host (client, SB_BENCH_ADDRESS, port, NULL, &error);
  if (tcp == NULL)
    sb_bench_die ("connect", error->message);
  g_socket_set_option (g_socket_connection_get_socket (tcp), IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  tls = g_tls_client_connection_new (G_IO_STREAM (tcp), NULL, &error);
  if (tls == NULL)
    sb_bench_die ("TLS client", error->message);
  g_signal_connect (tls, "accept-certificate", G_CALLBACK (accept_any_certificate), NULL);
  if (!g_tls_connection_handshake (G_TLS_CONNECTION (tls), NULL, &error))
    sb_bench_die ("TLS handshake", error->message);
  return g_steal_pointer (&tls);
}

/* A reset at exit, as close_all(): no TIME_WAIT left behind. */
static void
reset_on_close (GIOStream *tls)
{
  g_autoptr(GIOStream) base = NULL;
  struct linger reset = { 1, 0 };

  g_object_get (tls, "base-io-stream", &base, NULL);
  setsockopt (g_socket_get_fd (g_socket_connection_get_socket (G_SOCKET_CONNECTION (base))),
              SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
}

typedef struct
{
  GIOStream    *tls;
  guint64       left;    /* bytes still to write */
  const guint8 *block;
  gsize         block_len;
} TlsWriter;

static gpointer
tls_write_all (gpointer data)
{
  TlsWriter *w = data;
  GOutputStream *out = g_io_stream_get_output_stream (w->tls);
  g_autoptr(GError) error = NULL;

  while (w->left > 0) {
    gsize len = MIN ((guint64) w->block_len, w->left);

    if (!g_output_stream_write_all (out, w->block, len, NULL, NULL, &error))
      sb_bench_die ("TLS write", error->message);
    w->left -= len;
  }
  return NULL;
}

static void
wait_go (void)
{
  char line[64];

  if (fgets (line, sizeof line, stdin) == NULL)
    exit (0);
}

static gint64
process_cpu_us (void)
{
  struct rusage usage;

  getrusage (RUSAGE_SELF, &usage);
  return (gint64) (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * G_USEC_PER_SEC +
         usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
}

static int
run_tls (guint16 port,
         guint   clients,
         guint64 frames,
         gsize   size)
{
  g_autofree TlsWriter *writers = g_new0 (TlsWriter, clients);
  g_autofree GThread **threads = g_new0 (GThread *, clients);
  g_autofree guint8 *block = NULL;
  gsize block_len;
  gint64 start, end, cpu;

  block = make_block (size, &block_len);
  for (guint i = 0; i < clients; i++) {
    writers[i].tls = connect_tls (port);
    writers[i].left = (frames / clients + (i < frames % clients ? 1 : 0)) * size;
    writers[i].block = block;
    writers[i].block_len = block_len;
    reset_on_close (writers[i].tls);
  }
  printf ("ready\n");
  fflush (stdout);
  wait_go ();
  cpu = process_cpu_us ();
  start = g_get_monotonic_time ();
  for (guint i = 0; i < clients; i++)
    threads[i] = g_thread_new ("tls-writer", tls_write_all, &writers[i]);
  for (guint i = 0; i < clients; i++)
    g_thread_join (threads[i]);
  end = g_get_monotonic_time ();
  cpu = process_cpu_us () - cpu;
  printf ("sent_frames=%" G_GUINT64_FORMAT " start_us=%" G_GINT64_FORMAT
          " end_us=%" G_GINT64_FORMAT " cpu_us=%" G_GINT64_FORMAT "\n", frames, start, end, cpu);
  fflush (stdout);
  wait_stdin_end ();
  return 0;
}

typedef struct
{
  guint16     port;
  guint       count;
  gint        next;      /* atomic: the next connection to open */
  GIOStream **held;
} TlsHold;

static gpointer
tls_hold_some (gpointer data)
{
  TlsHold *hold = data;
  guint i;

  while ((i = (guint) g_atomic_int_add (&hold->next, 1)) < hold->count) {
    hold->held[i] = connect_tls (hold->port);
    reset_on_close (hold->held[i]);
  }
  return NULL;
}

static int
run_tls_hold (guint16 port,
              guint   count)
{
  g_autofree GIOStream **held = g_new0 (GIOStream *, count);
  TlsHold hold = { port, count, 0, held };
  GThread *threads[TLS_HOLD_THREADS];
  gint64 start, done;

  sb_bench_raise_nofile ();
  start = g_get_monotonic_time ();
  for (guint i = 0; i < TLS_HOLD_THREADS; i++)
    threads[i] = g_thread_new ("tls-hold", tls_hold_some, &hold);
  for (guint i = 0; i < TLS_HOLD_THREADS; i++)
    g_thread_join (threads[i]);
  done = g_get_monotonic_time ();
  printf ("start_us=%" G_GINT64_FORMAT " done_us=%" G_GINT64_FORMAT " ok=%u failed=0\n",
          start, done, count);
  fflush (stdout);
  wait_stdin_end ();
  return 0;
}

int
main (int   argc,
      char *argv[])
{
  const char *mode = argc > 1 ? argv[1] : "";

  if (g_str_equal (mode, "tcp") && argc == 6)
    return run_tcp (parse_port (argv[2]), sb_bench_parse_uint (argv[3], "CLIENTS"),
                    sb_bench_parse_uint (argv[4], "FRAMES"), sb_bench_parse_uint (argv[5], "SIZE"));
  if (g_str_equal (mode, "udp") && argc == 5)
    return run_udp (parse_port (argv[2]), sb_bench_parse_uint (argv[3], "FRAMES"),
                    sb_bench_parse_uint (argv[4], "SIZE"), NULL, 0);
  if (g_str_equal (mode, "udp") && argc == 9 && g_str_equal (argv[5], "--progress") &&
      g_str_equal (argv[7], "--window"))
    return run_udp (parse_port (argv[2]), sb_bench_parse_uint (argv[3], "FRAMES"),
                    sb_bench_parse_uint (argv[4], "SIZE"), argv[6],
                    sb_bench_parse_uint (argv[8], "W"));
  if (g_str_equal (mode, "rtt") && (argc == 5 || argc == 6))
    return run_rtt (argv[2], sb_bench_parse_uint (argv[3], "COUNT"),
                    sb_bench_parse_uint (argv[4], "SIZE"),
                    argc == 6 ? sb_bench_parse_uint (argv[5], "BLOCK") : 1);
  if (g_str_equal (mode, "hold") && argc == 4)
    return run_hold (parse_port (argv[2]), sb_bench_parse_uint (argv[3], "COUNT"));
  if (g_str_equal (mode, "tls") && argc == 6)
    return run_tls (parse_port (argv[2]), sb_bench_parse_uint (argv[3], "CLIENTS"),
                    sb_bench_parse_uint (argv[4], "FRAMES"), sb_bench_parse_uint (argv[5], "SIZE"));
  if (g_str_equal (mode, "tls-hold") && argc == 4)
    return run_tls_hold (parse_port (argv[2]), sb_bench_parse_uint (argv[3], "COUNT"));
  sb_bench_die ("usage", "sb-bench-load tcp PORT CLIENTS FRAMES SIZE | "
                "udp PORT FRAMES SIZE [--progress FILE --window W] | "
                "rtt PORT[,PORT...] COUNT SIZE [BLOCK] | hold PORT COUNT | "
                "tls PORT CLIENTS FRAMES SIZE | tls-hold PORT COUNT");
}
