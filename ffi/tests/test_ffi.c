/*
 * test_ffi.c: the C ABI's tests, with a tiny harness. ffi/test.sh builds
 * them against libflagpost.so and libflagpost.a, and runs them plainly,
 * under valgrind and as an AddressSanitizer build.
 *
 * A real `flagpost serve` (with a key) is named by FLAGPOST_TEST_BROKER and
 * FLAGPOST_TEST_KEY_FILE; the other tests run an in-process broker.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "flagpost.h"

/* ---- harness ---- */

static const char *current;
static int failed_current, passed, failed;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed (last error: %s)\n", __FILE__, \
                    __LINE__, current, #cond, flagpost_last_error());                  \
            failed_current = 1;                                                        \
            return;                                                                    \
        }                                                                              \
    } while (0)

#define EQ(a, b)                                                                             \
    do {                                                                                     \
        long long a_ = (long long)(a), b_ = (long long)(b);                                  \
        if (a_ != b_) {                                                                      \
            fprintf(stderr, "%s:%d: %s: %s == %lld, expected %s == %lld (last error: %s)\n", \
                    __FILE__, __LINE__, current, #a, a_, #b, b_, flagpost_last_error());     \
            failed_current = 1;                                                              \
            return;                                                                          \
        }                                                                                    \
    } while (0)

#define RUN(test)                                                  \
    do {                                                           \
        current = #test;                                           \
        failed_current = 0;                                        \
        test();                                                    \
        if (failed_current) {                                      \
            failed++;                                              \
            printf("FAIL %s\n", #test);                            \
        } else {                                                   \
            passed++;                                              \
            printf("ok   %s\n", #test);                            \
        }                                                          \
        fflush(stdout);                                            \
    } while (0)

#define LONG 5000 /* ms: a deadline for what should take microseconds */

/* ---- helpers ---- */

static FlagpostBroker *spawn_broker(char *addr, size_t len) {
    FlagpostBroker *b = NULL;
    if (flagpost_broker_spawn("127.0.0.1:0", NULL, &b) != FLAGPOST_OK)
        return NULL;
    if (flagpost_broker_local_addr(b, addr, len) <= 0) {
        flagpost_broker_free(b);
        return NULL;
    }
    return b;
}

static FlagpostListener *listen_to(const char *addr, const char *channel, const char *key_file) {
    FlagpostListenerOptions o;
    FlagpostListener *l = NULL;
    if (flagpost_listener_options_init(&o, sizeof o) != FLAGPOST_OK)
        return NULL;
    o.broker = addr;
    o.channel = channel;
    o.key_file = key_file;
    return flagpost_listener_new(&o, &l) == FLAGPOST_OK ? l : NULL;
}

static FlagpostNotifier *notifier_to(const char *addr, const char *key_file) {
    FlagpostNotifierOptions o;
    FlagpostNotifier *n = NULL;
    if (flagpost_notifier_options_init(&o, sizeof o) != FLAGPOST_OK)
        return NULL;
    o.broker = addr;
    o.key_file = key_file;
    return flagpost_notifier_new(&o, &n) == FLAGPOST_OK ? n : NULL;
}

/* Listening, with the welcome's reconnect raise taken: 1, or 0. */
static int listening(FlagpostListener *l) {
    return flagpost_listener_wait_listening(l, LONG) == 1 && flagpost_listener_wait(l, LONG) == 1 &&
           flagpost_listener_check_reconnect(l) == 1 &&
           flagpost_listener_take(l) == (FLAGPOST_STATUS | FLAGPOST_NON_STATUS | FLAGPOST_CHANNEL_UPDATE);
}

static int contains(const char *text, const char *part) { return strstr(text, part) != NULL; }

/* ---- tests ---- */

static void status_strings_are_static_and_distinct(void) {
    CHECK(strcmp(flagpost_status_str(FLAGPOST_OK), "ok") == 0);
    CHECK(contains(flagpost_status_str(FLAGPOST_E_TIMEOUT), "timed out"));
    CHECK(contains(flagpost_status_str(FLAGPOST_E_REFUSED), "refused"));
    CHECK(strcmp(flagpost_status_str(FLAGPOST_E_NULL), flagpost_status_str(FLAGPOST_E_UTF8)) != 0);
    CHECK(strcmp(flagpost_status_str(12345), "unknown status") == 0);
}

static void invalid_arguments_are_codes(void) {
    FlagpostNotifierOptions no;
    FlagpostListenerOptions lo;
    FlagpostNotifier *n = NULL;
    FlagpostListener *l = NULL;
    FlagpostBroker *b = NULL;

    EQ(flagpost_notifier_options_init(NULL, sizeof no), FLAGPOST_E_NULL);
    EQ(flagpost_notifier_options_init(&no, 2), FLAGPOST_E_INVALID);
    EQ(flagpost_notifier_options_init(&no, sizeof no), FLAGPOST_OK);
    EQ(no.size, sizeof no);
    EQ(flagpost_notifier_new(&no, NULL), FLAGPOST_E_NULL);

    no.broker = "no-port-here:http:x";
    EQ(flagpost_notifier_new(&no, &n), FLAGPOST_E_ADDRESS);
    CHECK(contains(flagpost_last_error(), "no-port-here"));
    no.broker = "\xff\xfe:1";
    EQ(flagpost_notifier_new(&no, &n), FLAGPOST_E_UTF8);
    no.broker = "127.0.0.1:9";
    no.key_file = "/nonexistent/flagpost.key";
    EQ(flagpost_notifier_new(&no, &n), FLAGPOST_E_KEY_FILE);
    CHECK(contains(flagpost_last_error(), "/nonexistent/flagpost.key"));
    CHECK(n == NULL);

    no.size = 0; /* never initialised */
    EQ(flagpost_notifier_new(&no, &n), FLAGPOST_E_INVALID);
    CHECK(contains(flagpost_last_error(), "_init"));

    EQ(flagpost_listener_options_init(&lo, sizeof lo), FLAGPOST_OK);
    EQ(lo.interest, FLAGPOST_ALL);
    lo.broker = "127.0.0.1:9";
    lo.interest = 0x10;
    EQ(flagpost_listener_new(&lo, &l), FLAGPOST_E_INVALID);
    CHECK(contains(flagpost_last_error(), "interest"));
    lo.interest = FLAGPOST_STATUS;
    lo.channel = "";
    EQ(flagpost_listener_new(&lo, &l), FLAGPOST_E_CHANNEL);
    lo.channel = "a channel name longer than 32 bytes";
    EQ(flagpost_listener_new(&lo, &l), FLAGPOST_E_CHANNEL);
    CHECK(contains(flagpost_last_error(), "longer than 32"));
    lo.channel = "tab\there";
    EQ(flagpost_listener_new(&lo, &l), FLAGPOST_E_CHANNEL);
    lo.channel = "caf\xc3";
    EQ(flagpost_listener_new(&lo, &l), FLAGPOST_E_UTF8);
    CHECK(l == NULL);

    EQ(flagpost_notify_status_update(NULL, NULL), FLAGPOST_E_NULL);
    EQ(flagpost_notify_non_status_update_confirmed(NULL, 10), FLAGPOST_E_NULL);
    EQ(flagpost_listener_check_status_update(NULL), FLAGPOST_E_NULL);
    EQ(flagpost_listener_take(NULL), FLAGPOST_E_NULL);
    EQ(flagpost_listener_wait(NULL, 10), FLAGPOST_E_NULL);
    EQ(flagpost_listener_state(NULL), FLAGPOST_E_NULL);
    EQ(flagpost_broker_spawn(NULL, NULL, &b), FLAGPOST_E_NULL);
    EQ(flagpost_broker_spawn("127.0.0.1:0", NULL, NULL), FLAGPOST_E_NULL);

    /* a live notifier: channels are checked, a required one is required */
    no.size = sizeof no;
    no.key_file = NULL;
    EQ(flagpost_notifier_new(&no, &n), FLAGPOST_OK);
    EQ(flagpost_notify_channel_update(n, NULL), FLAGPOST_E_NULL);
    EQ(flagpost_notify_channel_shutdown(n, "x\x01y"), FLAGPOST_E_CHANNEL);
    EQ(flagpost_notify_status_update(n, "\xc0"), FLAGPOST_E_UTF8);
    FlagpostNotifierStats stats = {0}; /* size unset */
    EQ(flagpost_notifier_stats(n, &stats), FLAGPOST_E_INVALID);
    stats.size = sizeof stats;
    EQ(flagpost_notifier_stats(n, &stats), FLAGPOST_OK);
    EQ(stats.calls, 0); /* the refused calls never counted */
    flagpost_notifier_free(n);

    char small[4];
    CHECK((b = spawn_broker(small, sizeof small)) == NULL); /* too small a buffer */
    EQ(flagpost_broker_spawn("127.0.0.1:0", NULL, &b), FLAGPOST_OK);
    EQ(flagpost_broker_local_addr(b, small, sizeof small), FLAGPOST_E_INVALID);
    CHECK(contains(flagpost_last_error(), "too small"));
    flagpost_broker_free(b);
}

static void last_error_is_per_thread(void);

static void *other_thread_error(void *arg) {
    (void)arg;
    return strdup(flagpost_last_error());
}

static void last_error_is_per_thread(void) {
    EQ(flagpost_listener_wait(NULL, 0), FLAGPOST_E_NULL);
    CHECK(contains(flagpost_last_error(), "listener is NULL"));
    pthread_t t;
    void *text = NULL;
    EQ(pthread_create(&t, NULL, other_thread_error, NULL), 0);
    EQ(pthread_join(t, &text), 0);
    CHECK(text != NULL);
    int empty = strcmp(text, "") == 0;
    free(text);
    CHECK(empty);
    /* success leaves it as it was */
    EQ(flagpost_status_str(0)[0], 'o');
    CHECK(contains(flagpost_last_error(), "listener is NULL"));
}

static void frees_accept_null(void) {
    flagpost_notifier_free(NULL);
    flagpost_listener_free(NULL);
    flagpost_broker_free(NULL);
    EQ(flagpost_listener_stop(NULL), FLAGPOST_E_NULL);
}

static void a_notifier_wakes_a_listener(void) {
    char addr[64];
    FlagpostBroker *b = spawn_broker(addr, sizeof addr);
    CHECK(b != NULL);
    FlagpostListener *l = listen_to(addr, NULL, NULL);
    FlagpostNotifier *n = notifier_to(addr, NULL);
    CHECK(l != NULL && n != NULL);
    CHECK(listening(l));
    EQ(flagpost_listener_state(l), FLAGPOST_LISTENING);
    EQ(flagpost_listener_wait(l, 0), 0); /* nothing raised */

    EQ(flagpost_notify_status_update(n, NULL), FLAGPOST_OK);
    EQ(flagpost_listener_wait(l, LONG), 1);
    EQ(flagpost_listener_check_reconnect(l), 0); /* a notification, not a reconnect */
    /* NotifyStatusUpdate raises status and non-status */
    EQ(flagpost_listener_check_status_update(l), 1);
    EQ(flagpost_listener_check_status_update(l), 0); /* test-and-clear */
    CHECK(flagpost_listener_wait(l, LONG) == 1); /* non-status came with it */
    EQ(flagpost_listener_check_non_status_update(l), 1);

    EQ(flagpost_notify_channel_shutdown(n, "orders"), FLAGPOST_OK);
    EQ(flagpost_listener_wait(l, LONG), 1);
    EQ(flagpost_listener_check_channel_update(l), 0);
    EQ(flagpost_listener_check_channel_shutdown(l), 1);

    EQ(flagpost_listener_stop(l), FLAGPOST_OK);
    EQ(flagpost_listener_state(l), FLAGPOST_CLOSED);
    EQ(flagpost_listener_wait(l, LONG), FLAGPOST_E_STOPPED);
    flagpost_listener_free(l);
    flagpost_notifier_free(n);
    EQ(flagpost_broker_shutdown(b), FLAGPOST_OK);
    flagpost_broker_free(b);
}

static void a_channel_listener_hears_its_channel_only(void) {
    char addr[64];
    FlagpostBroker *b = spawn_broker(addr, sizeof addr);
    CHECK(b != NULL);
    FlagpostListener *l = listen_to(addr, "a", NULL);
    FlagpostNotifier *n = notifier_to(addr, NULL);
    CHECK(l != NULL && n != NULL);
    CHECK(listening(l));
    /* acked, so the broker handled "b" before "a"; frames keep their order */
    EQ(flagpost_notify_status_update_confirmed(n, "b", LONG), FLAGPOST_OK);
    EQ(flagpost_notify_channel_shutdown_confirmed(n, "b", LONG), FLAGPOST_OK);
    EQ(flagpost_notify_channel_update_confirmed(n, "a", LONG), FLAGPOST_OK);
    EQ(flagpost_listener_wait(l, LONG), 1);
    EQ(flagpost_listener_take(l), FLAGPOST_CHANNEL_UPDATE);
    /* an update for all channels reaches it too */
    EQ(flagpost_notify_non_status_update_confirmed(n, LONG), FLAGPOST_OK);
    EQ(flagpost_listener_wait(l, LONG), 1);
    EQ(flagpost_listener_take(l), FLAGPOST_NON_STATUS);
    flagpost_listener_free(l);
    flagpost_notifier_free(n);
    flagpost_broker_free(b);
}

/* A bound UDP socket on loopback that never answers: its address in addr. */
static int silent_udp(char *addr, size_t len) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    snprintf(addr, len, "127.0.0.1:%u", ntohs(sa.sin_port));
    return fd;
}

static void confirmed_calls_say_timeout_and_refused(void) {
    char addr[64];
    int fd = silent_udp(addr, sizeof addr);
    CHECK(fd >= 0);
    FlagpostNotifier *n = notifier_to(addr, NULL);
    CHECK(n != NULL);
    EQ(flagpost_notify_status_update_confirmed(n, NULL, 300), FLAGPOST_E_TIMEOUT);
    CHECK(contains(flagpost_last_error(), "no acknowledgement"));
    FlagpostNotifierStats s = {.size = sizeof s};
    EQ(flagpost_notifier_stats(n, &s), FLAGPOST_OK);
    CHECK(s.retransmissions >= 1); /* it retried before giving up */
    close(fd);                     /* now nothing listens: port unreachable */
    EQ(flagpost_notify_channel_update_confirmed(n, "c", LONG), FLAGPOST_E_REFUSED);
    CHECK(contains(flagpost_last_error(), "refused"));
    flagpost_notifier_free(n);
}

struct counter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
};

static void on_raise(void *user) {
    struct counter *c = user;
    pthread_mutex_lock(&c->lock);
    c->calls++;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* Waits until c->calls > seen (deadline LONG): the count, or -1. */
static int await_calls(struct counter *c, int seen) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += LONG / 1000;
    pthread_mutex_lock(&c->lock);
    int rc = 0;
    while (c->calls <= seen && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->cond, &c->lock, &deadline);
    int calls = c->calls > seen ? c->calls : -1;
    pthread_mutex_unlock(&c->lock);
    return calls;
}

static void the_raise_callback_fires(void) {
    char addr[64];
    struct counter c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    FlagpostBroker *b = spawn_broker(addr, sizeof addr);
    CHECK(b != NULL);
    FlagpostListenerOptions o;
    FlagpostListener *l = NULL;
    flagpost_listener_options_init(&o, sizeof o);
    o.broker = addr;
    o.interest = FLAGPOST_STATUS;
    o.on_raise = on_raise;
    o.user = &c;
    EQ(flagpost_listener_new(&o, &l), FLAGPOST_OK);
    int seen = await_calls(&c, 0); /* the welcome's reconnect raise */
    CHECK(seen >= 1);
    EQ(flagpost_listener_check_reconnect(l), 1);
    EQ(flagpost_listener_take(l), FLAGPOST_STATUS);
    FlagpostNotifier *n = notifier_to(addr, NULL);
    CHECK(n != NULL);
    EQ(flagpost_notify_status_update_confirmed(n, NULL, LONG), FLAGPOST_OK);
    CHECK(await_calls(&c, seen) > seen); /* called with no thread in wait */
    EQ(flagpost_listener_check_status_update(l), 1);
    flagpost_notifier_free(n);
    flagpost_listener_free(l);
    flagpost_broker_free(b);
}

#define THREADS 4
#define CALLS 500

static void *notify_many(void *arg) {
    FlagpostNotifier *n = arg;
    for (int i = 0; i < CALLS; i++)
        if (flagpost_notify_status_update(n, i % 2 ? NULL : "orders") != FLAGPOST_OK)
            return (void *)1;
    return NULL;
}

static void notify_from_many_threads(void) {
    char addr[64];
    FlagpostBroker *b = spawn_broker(addr, sizeof addr);
    CHECK(b != NULL);
    FlagpostListener *l = listen_to(addr, "orders", NULL);
    FlagpostNotifier *n = notifier_to(addr, NULL);
    CHECK(l != NULL && n != NULL);
    CHECK(listening(l));
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        EQ(pthread_create(&t[i], NULL, notify_many, n), 0);
    int errors = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        EQ(pthread_join(t[i], &r), 0);
        errors += r != NULL;
    }
    EQ(errors, 0);
    EQ(flagpost_notifier_flush(n, LONG), FLAGPOST_OK);
    FlagpostNotifierStats s = {.size = sizeof s};
    EQ(flagpost_notifier_stats(n, &s), FLAGPOST_OK);
    EQ(s.calls, THREADS * CALLS);
    CHECK(s.datagrams >= 1 && s.datagrams <= s.calls);
    EQ(s.send_errors, 0);
    EQ(flagpost_listener_wait(l, LONG), 1);
    EQ(flagpost_listener_check_status_update(l), 1);
    flagpost_listener_free(l);
    flagpost_notifier_free(n);
    flagpost_broker_free(b);
}

/* The broker restarts on the same address: the listener reconnects by
 * itself (within its backoff) and marks the raise as a reconnect. */
static void a_listener_reconnects_with_a_reconnect_raise(void) {
    char addr[64];
    FlagpostBroker *b = spawn_broker(addr, sizeof addr);
    CHECK(b != NULL);
    FlagpostListenerOptions o;
    FlagpostListener *l = NULL;
    flagpost_listener_options_init(&o, sizeof o);
    o.broker = addr;
    o.backoff_initial_ms = 20;
    o.backoff_max_ms = 100;
    EQ(flagpost_listener_new(&o, &l), FLAGPOST_OK);
    CHECK(listening(l));
    flagpost_broker_free(b); /* close frame: reason shutdown */
    EQ(flagpost_broker_spawn(addr, NULL, &b), FLAGPOST_OK);
    EQ(flagpost_listener_wait(l, LONG), 1);
    EQ(flagpost_listener_check_reconnect(l), 1);
    EQ(flagpost_listener_check_status_update(l), 1); /* re-check: work may have been missed */
    EQ(flagpost_listener_state(l), FLAGPOST_LISTENING);
    flagpost_listener_free(l);
    flagpost_broker_free(b);
}

static void *wait_long(void *arg) {
    return (void *)(long)flagpost_listener_wait(arg, 60000);
}

static void stop_wakes_a_waiting_thread(void) {
    char addr[64];
    FlagpostBroker *b = spawn_broker(addr, sizeof addr);
    CHECK(b != NULL);
    FlagpostListener *l = listen_to(addr, NULL, NULL);
    CHECK(l != NULL);
    CHECK(listening(l));
    pthread_t t;
    EQ(pthread_create(&t, NULL, wait_long, l), 0);
    EQ(flagpost_listener_stop(l), FLAGPOST_OK);
    void *r;
    EQ(pthread_join(t, &r), 0);
    EQ((long)r, FLAGPOST_E_STOPPED);
    flagpost_listener_free(l);
    flagpost_broker_free(b);
}

/* Through a real `flagpost serve --key-file`, started by ffi/test.sh. */
static void a_real_broker_with_a_key(void) {
    const char *addr = getenv("FLAGPOST_TEST_BROKER");
    const char *key = getenv("FLAGPOST_TEST_KEY_FILE");
    CHECK(addr != NULL && key != NULL); /* ffi/test.sh sets them */
    FlagpostListener *l = listen_to(addr, "orders", key);
    FlagpostNotifier *n = notifier_to(addr, key);
    CHECK(l != NULL && n != NULL);
    CHECK(listening(l));
    EQ(flagpost_notify_status_update_confirmed(n, "orders", LONG), FLAGPOST_OK);
    EQ(flagpost_listener_wait(l, LONG), 1);
    EQ(flagpost_listener_check_status_update(l), 1);
    /* without the key, the broker refuses the listener */
    FlagpostListener *stranger = listen_to(addr, NULL, NULL);
    CHECK(stranger != NULL);
    EQ(flagpost_listener_wait_listening(stranger, LONG), 0);
    CHECK(flagpost_listener_state(stranger) != FLAGPOST_LISTENING);
    flagpost_listener_free(stranger);
    flagpost_listener_free(l);
    flagpost_notifier_free(n);
}

#if defined(FLAGPOST_TEST_HOOKS)
static void a_panic_becomes_a_code(void) {
    EQ(flagpost_test_panic("kaboom"), FLAGPOST_E_PANIC);
    CHECK(contains(flagpost_last_error(), "kaboom"));
    EQ(flagpost_test_panic(NULL), FLAGPOST_E_PANIC); /* and again: the library still works */
    EQ(flagpost_listener_wait(NULL, 0), FLAGPOST_E_NULL);
}
#endif

int main(void) {
    RUN(status_strings_are_static_and_distinct);
    RUN(invalid_arguments_are_codes);
    RUN(last_error_is_per_thread);
    RUN(frees_accept_null);
    RUN(a_notifier_wakes_a_listener);
    RUN(a_channel_listener_hears_its_channel_only);
    RUN(confirmed_calls_say_timeout_and_refused);
    RUN(the_raise_callback_fires);
    RUN(notify_from_many_threads);
    RUN(stop_wakes_a_waiting_thread);
    RUN(a_listener_reconnects_with_a_reconnect_raise);
    RUN(a_real_broker_with_a_key);
#if defined(FLAGPOST_TEST_HOOKS)
    RUN(a_panic_becomes_a_code);
#else
    printf("FAIL a_panic_becomes_a_code: built without -DFLAGPOST_TEST_HOOKS\n");
    failed++;
#endif
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
