/* delay_switch: a userspace switch with link latency and bandwidth, for the netsim benchmark
 * (tests/netsim/bench_netsim.sh) on kernels without netem.
 *
 *   delay_switch DELAY_US RATE_MBIT READY_FILE NETNS...
 *
 * For each network namespace NETNS (by its name under /run/netns) it creates a TUN device
 * "eth0" there (layer 3, no ARP), then writes READY_FILE; the caller gives each eth0 its address
 * and brings it up. Port i's address must be 10.77.0.X: a packet read from any port goes to the
 * port whose address holds its IPv4 destination (the caller passes the map as NETNS=X).
 *
 * Every port is one node's link to an ideal cut-through switch: a packet of B bytes from port s
 * to port d takes B·8/RATE on s's uplink after what s sent before, goes out on d's downlink as
 * it comes in (queueing there only behind other senders' packets to d), and is delivered
 * DELAY_US after its last byte (one-way latency; a round trip is twice that).
 * RATE_MBIT 0 = no serialization. The switch itself adds its own read/write time, some µs per
 * packet on a loaded machine: the benchmark measures with DELAY 0 / RATE 0 as the baseline.
 * Runs until killed. Not a test of gptoss: a tool of the benchmark script. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

enum { MAX_PORTS = 64, MAX_PACKET = 65536, QUEUE_SLOTS = 4096, SPIN_NS = 30000 };

typedef struct {
  int64_t release_ns;
  int len;
  unsigned char *data;
} Packet;

typedef struct {
  int fd;
  int addr_last_octet;
  int64_t up_free_ns, down_free_ns; /* when this port's uplink / downlink is next idle */
  Packet queue[QUEUE_SLOTS];        /* to this port, in release order (a FIFO: one delay, one rate) */
  int head, count;
} Port;

static Port g_ports[MAX_PORTS];
static int g_num_ports;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int open_tun_in(const char *netns) {
  char path[256];
  snprintf(path, sizeof path, "/run/netns/%s", netns);
  const int nsfd = open(path, O_RDONLY);
  if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
    fprintf(stderr, "delay_switch: cannot enter %s: %s\n", path, strerror(errno));
    return -1;
  }
  close(nsfd);
  const int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strcpy(ifr.ifr_name, "eth0");
  if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) != 0) {
    fprintf(stderr, "delay_switch: cannot create a TUN eth0 in %s: %s\n", netns, strerror(errno));
    return -1;
  }
  return fd;
}

static Port *port_for(const unsigned char *ip, int len) {
  if (len < 20 || (ip[0] >> 4) != 4) return NULL;
  for (int i = 0; i < g_num_ports; i++) {
    if (ip[19] == g_ports[i].addr_last_octet) return &g_ports[i];
  }
  return NULL;
}

/* Read every packet waiting on port s and queue it for its destination. */
static void take_packets(Port *s, int64_t delay_ns, double ns_per_byte) {
  for (;;) {
    unsigned char *buf = malloc(MAX_PACKET);
    const int len = buf ? (int)read(s->fd, buf, MAX_PACKET) : -1;
    if (len <= 0) {
      free(buf);
      return;
    }
    Port *d = port_for(buf, len);
    if (!d || d->count == QUEUE_SLOTS) { /* not for a port, or a full queue: dropped, as a switch would */
      free(buf);
      continue;
    }
    const int64_t now = now_ns(), wire = (int64_t)(ns_per_byte * len);
    /* Cut-through: the downlink starts sending as the uplink starts receiving, so an idle path
     * costs one wire time, not two; two senders to one port queue on its downlink. */
    s->up_free_ns = (s->up_free_ns > now ? s->up_free_ns : now) + wire;
    const int64_t down_start = s->up_free_ns - wire;
    d->down_free_ns = (d->down_free_ns > down_start ? d->down_free_ns : down_start) + wire;
    Packet *p = &d->queue[(d->head + d->count++) % QUEUE_SLOTS];
    *p = (Packet){d->down_free_ns + delay_ns, len, buf};
  }
}

/* Deliver what is due; returns the earliest release still pending (INT64_MAX if none). */
static int64_t deliver_due(void) {
  int64_t next = INT64_MAX;
  const int64_t now = now_ns();
  for (int i = 0; i < g_num_ports; i++) {
    Port *d = &g_ports[i];
    while (d->count > 0 && d->queue[d->head].release_ns <= now) {
      Packet *p = &d->queue[d->head];
      const ssize_t written = write(d->fd, p->data, (size_t)p->len);
      (void)written; /* failed (the node's receive queue is full): lost, as on a real link */
      free(p->data);
      d->head = (d->head + 1) % QUEUE_SLOTS;
      d->count--;
    }
    if (d->count > 0 && d->queue[d->head].release_ns < next) next = d->queue[d->head].release_ns;
  }
  return next;
}

int main(int argc, char **argv) {
  if (argc < 5 || argc - 4 > MAX_PORTS) {
    fprintf(stderr, "usage: delay_switch DELAY_US RATE_MBIT READY_FILE NETNS=LAST_OCTET...\n");
    return 2;
  }
  const int64_t delay_ns = (int64_t)(atof(argv[1]) * 1000.0);
  const double rate_mbit = atof(argv[2]);
  const double ns_per_byte = rate_mbit > 0 ? 8.0 * 1000.0 / rate_mbit : 0.0;
  prctl(PR_SET_TIMERSLACK, 1UL);
  for (int i = 4; i < argc; i++) {
    char *eq = strchr(argv[i], '=');
    if (!eq) return 2;
    *eq = '\0';
    Port *p = &g_ports[g_num_ports++];
    p->addr_last_octet = atoi(eq + 1);
    if ((p->fd = open_tun_in(argv[i])) < 0) return 1;
  }
  FILE *ready = fopen(argv[3], "w");
  if (!ready) return 1;
  fprintf(ready, "%d ports, delay %lld ns, %.0f Mbit/s\n", g_num_ports, (long long)delay_ns, rate_mbit);
  fclose(ready);

  struct pollfd fds[MAX_PORTS];
  for (int i = 0; i < g_num_ports; i++) fds[i] = (struct pollfd){.fd = g_ports[i].fd, .events = POLLIN};
  for (;;) {
    const int64_t next = deliver_due();
    int64_t wait = next == INT64_MAX ? -1 : next - now_ns();
    if (next != INT64_MAX && wait < 0) wait = 0;
    int ready_fds;
    if (wait >= 0 && wait < SPIN_NS) {
      ready_fds = poll(fds, (nfds_t)g_num_ports, 0); /* close to a release: do not sleep past it */
    } else {
      const struct timespec ts = {wait / 1000000000, wait % 1000000000};
      ready_fds = ppoll(fds, (nfds_t)g_num_ports, wait < 0 ? NULL : &ts, NULL);
    }
    if (ready_fds < 0 && errno != EINTR) return 1;
    for (int i = 0; ready_fds > 0 && i < g_num_ports; i++) {
      if (fds[i].revents & POLLIN) take_packets(&g_ports[i], delay_ns, ns_per_byte);
    }
  }
}
