/* brisk exporter: every process published in BRISK_METRICS=DIR, served over
 * HTTP for Prometheus. Single-threaded: one connection at a time, each read with
 * a timeout so that a client that sends nothing cannot hold the others off.
 * GET /metrics answers in OpenMetrics 1.0 when the client accepts it (Prometheus
 * asks for it), else in the Prometheus text format 0.0.4; anything else is 404.
 * A row of the file named N with unit U becomes the family brisk_N_U (brisk_N
 * without a unit), a counter's sample brisk_N_U_total; each sample has the labels
 * pid and program, and node for a NUMA node's rows. The exporter is generic: it
 * serves whatever rows the files hold.
 *
 *   brisk exporter --listen ADDR:PORT [--dir DIR]   (PORT 0: any free port) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "metrics.h"

static const char exporter_usage[] = "usage: brisk exporter --listen ADDR:PORT [--dir DIR]\n";

/* A client has this long to send its request. */
#define REQUEST_TIMEOUT_S 5
#define REQUEST_MAX 8192 /* bytes of a request's head; more is refused */
#define FAMILIES_MAX 1024

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

typedef struct family_s {
  char name[BRISK_METRICS_NAME_MAX + BRISK_METRICS_UNIT_MAX + 8];
  const brisk_metric_row_t *def; /* the first row seen: kind, unit, help */
} family_t;

static void family_name(const brisk_metric_row_t *r, char *out, size_t n) {
  snprintf(out, n, "brisk_%s%s%s", r->name, r->unit[0] ? "_" : "", r->unit);
}

/* A label value as the formats want it: backslash, quote and newline escaped. */
static void put_label(FILE *f, const char *v) {
  for (; *v; v++) {
    if (*v == '\\' || *v == '"') fputc('\\', f), fputc(*v, f);
    else if (*v == '\n') fputs("\\n", f);
    else fputc(*v, f);
  }
}

/* The document for set, in OpenMetrics (om) or the 0.0.4 text format. */
static void write_metrics(FILE *f, const metrics_set_t *set, bool om) {
  static family_t fam[FAMILIES_MAX];
  size_t nfam = 0;
  for (size_t i = 0; i < set->n; i++)
    for (uint32_t r = 0; r < set->snaps[i].hdr.rows; r++) {
      const brisk_metric_row_t *row = &set->snaps[i].rows[r];
      char name[sizeof fam[0].name];
      family_name(row, name, sizeof name);
      size_t k = 0;
      while (k < nfam && strcmp(fam[k].name, name) != 0) k++;
      if (k == nfam && nfam < FAMILIES_MAX) {
        snprintf(fam[nfam].name, sizeof fam[nfam].name, "%s", name);
        fam[nfam++].def = row;
      }
    }
  for (size_t k = 0; k < nfam; k++) {
    const brisk_metric_row_t *d = fam[k].def;
    bool counter = d->kind == BRISK_METRIC_COUNTER;
    const char *type = counter ? "counter" : "gauge";
    if (om) {
      fprintf(f, "# TYPE %s %s\n", fam[k].name, type);
      if (d->unit[0]) fprintf(f, "# UNIT %s %s\n", fam[k].name, d->unit);
      fprintf(f, "# HELP %s %s\n", fam[k].name, d->help);
    } else {
      fprintf(f, "# HELP %s%s %s\n", fam[k].name, counter ? "_total" : "", d->help);
      fprintf(f, "# TYPE %s%s %s\n", fam[k].name, counter ? "_total" : "", type);
    }
    for (size_t i = 0; i < set->n; i++) {
      const metrics_snap_t *s = &set->snaps[i];
      for (uint32_t r = 0; r < s->hdr.rows; r++) {
        const brisk_metric_row_t *row = &s->rows[r];
        char name[sizeof fam[0].name];
        family_name(row, name, sizeof name);
        /* A row that another version of brisk spells differently is left out. */
        if (strcmp(name, fam[k].name) != 0 || row->kind != d->kind) continue;
        fprintf(f, "%s%s{pid=\"%d\",program=\"", name, counter ? "_total" : "", (int)s->hdr.pid);
        put_label(f, s->hdr.program);
        if (row->node >= 0) fprintf(f, "\",node=\"%d", (int)row->node);
        fprintf(f, "\"} %llu\n", (unsigned long long)row->value);
      }
    }
  }
  if (om) fputs("# EOF\n", f);
}

static void send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

static void respond(int fd, const char *status, const char *type, const char *body, size_t len) {
  char head[256];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
                   type, len);
  send_all(fd, head, (size_t)n);
  send_all(fd, body, len);
}

static void not_found(int fd) {
  static const char msg[] = "not found: this exporter serves GET /metrics\n";
  respond(fd, "404 Not Found", "text/plain; charset=utf-8", msg, sizeof msg - 1);
}

/* One connection: the request's head, then one answer. */
static void serve(int fd, const char *dir) {
  struct timeval tv = {REQUEST_TIMEOUT_S, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char req[REQUEST_MAX + 1];
  size_t have = 0;
  req[0] = 0;
  while (have < REQUEST_MAX && !strstr(req, "\r\n\r\n")) {
    ssize_t r = recv(fd, req + have, REQUEST_MAX - have, 0);
    if (r < 0 && errno == EINTR && !stop) continue;
    if (r <= 0) break;
    have += (size_t)r;
    req[have] = 0;
  }
  req[have] = 0;
  char *eol = strstr(req, "\r\n");
  if (eol == NULL) {
    static const char msg[] = "bad request\n";
    respond(fd, "400 Bad Request", "text/plain; charset=utf-8", msg, sizeof msg - 1);
    return;
  }
  *eol = 0;
  const char *headers = eol + 2;
  /* "GET /metrics HTTP/1.1", a query string allowed */
  char method[8], target[256], version[16];
  if (sscanf(req, "%7s %255s %15s", method, target, version) != 3 || strcmp(method, "GET") != 0 ||
      strncmp(version, "HTTP/", 5) != 0) {
    not_found(fd);
    return;
  }
  size_t plen = strcspn(target, "?");
  if (plen != strlen("/metrics") || strncmp(target, "/metrics", plen) != 0) {
    not_found(fd);
    return;
  }
  bool om = strcasestr(headers, "application/openmetrics-text") != NULL;
  metrics_set_t set;
  int err = metrics_scan(dir, &set);
  if (err) {
    char msg[512];
    int n = snprintf(msg, sizeof msg, "cannot read %s: %s\n", dir, strerror(err));
    respond(fd, "503 Service Unavailable", "text/plain; charset=utf-8", msg, (size_t)n);
    return;
  }
  char *body = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&body, &len);
  if (f == NULL) {
    metrics_set_free(&set);
    return;
  }
  write_metrics(f, &set, om);
  fclose(f);
  metrics_set_free(&set);
  respond(fd, "200 OK",
          om ? "application/openmetrics-text; version=1.0.0; charset=utf-8" : "text/plain; version=0.0.4; charset=utf-8",
          body, len);
  free(body);
}

/* "127.0.0.1:9100" into addr; false if it is not an IPv4 address and port. */
static bool parse_listen(const char *s, struct sockaddr_in *addr) {
  const char *colon = strrchr(s, ':');
  if (colon == NULL || colon == s || (size_t)(colon - s) >= 64) return false;
  char host[64];
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = 0;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (colon[1] == 0 || *end || port < 0 || port > 65535) return false;
  memset(addr, 0, sizeof *addr);
  addr->sin_family = AF_INET;
  addr->sin_port = htons((uint16_t)port);
  return inet_pton(AF_INET, host, &addr->sin_addr) == 1;
}

int exporter_main(int argc, char **argv) {
  const char *dir_opt = NULL, *listen_at = NULL;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--listen") == 0 && v) listen_at = v, i++;
    else if (strcmp(argv[i], "--dir") == 0 && v) dir_opt = v, i++;
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(exporter_usage, stdout);
      return 0;
    } else {
      fprintf(stderr, "brisk: exporter: unknown or incomplete option '%s'\n%s", argv[i], exporter_usage);
      return 2;
    }
  }
  struct sockaddr_in addr;
  if (listen_at == NULL || !parse_listen(listen_at, &addr)) {
    fprintf(stderr, "brisk: exporter: --listen wants ADDR:PORT (an IPv4 address), got '%s'\n%s",
            listen_at ? listen_at : "nothing", exporter_usage);
    return 2;
  }
  const char *dir = metrics_dir(dir_opt);
  if (dir == NULL) {
    fprintf(stderr, "brisk: exporter: no directory: give --dir DIR or set BRISK_METRICS\n");
    return 2;
  }
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  socklen_t alen = sizeof addr;
  if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(ls, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(ls, 16) != 0 ||
      getsockname(ls, (struct sockaddr *)&addr, &alen) != 0) {
    fprintf(stderr, "brisk: exporter: cannot listen on %s: %s\n", listen_at, strerror(errno));
    return 1;
  }
  struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: accept returns */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  char host[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &addr.sin_addr, host, sizeof host);
  /* The port chosen, for --listen ADDR:0 (tests and scripts read this line). */
  printf("brisk exporter: serving %s on http://%s:%u/metrics\n", dir, host, (unsigned)ntohs(addr.sin_port));
  fflush(stdout);
  while (!stop) {
    int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) continue; /* EINTR (stop is looked at), or a connection that went away */
    serve(c, dir);
    close(c);
  }
  close(ls);
  metrics_forget_self();
  return 0;
}
