/*
 * wake.c: a listener woken by a notifier, with the vendor's check loop
 * (StartChangeListening, HasStatusUpdate, ..., StopChangeListening) in C.
 *
 *   wake [HOST:PORT [KEY_FILE]]   a running `flagpost serve`
 *   wake                          an in-process broker on a free port
 *
 * Build: cc -Iffi/include wake.c -Ltarget/debug -lflagpost -o wake
 */
#include <stdio.h>
#include <string.h>

#include "flagpost.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "wake: %s: %s (%s)\n", what, flagpost_status_str(rc), flagpost_last_error());
    return 1;
}

int main(int argc, char **argv) {
    char addr[64] = "127.0.0.1:16725";
    const char *key_file = argc > 2 ? argv[2] : NULL;
    FlagpostBroker *broker = NULL;
    FlagpostListener *listener = NULL;
    FlagpostNotifier *notifier = NULL;
    int rc, status = 1;

    if (argc > 1) {
        snprintf(addr, sizeof addr, "%s", argv[1]);
    } else if ((rc = flagpost_broker_spawn("127.0.0.1:0", NULL, &broker)) != FLAGPOST_OK ||
               (rc = flagpost_broker_local_addr(broker, addr, sizeof addr)) < 0) {
        status = fail("broker", rc);
        goto out;
    }

    /* StartChangeListening */
    FlagpostListenerOptions lo;
    flagpost_listener_options_init(&lo, sizeof lo);
    lo.broker = addr;
    lo.key_file = key_file;
    if ((rc = flagpost_listener_new(&lo, &listener)) != FLAGPOST_OK) {
        status = fail("listener", rc);
        goto out;
    }
    FlagpostNotifierOptions no;
    flagpost_notifier_options_init(&no, sizeof no);
    no.broker = addr;
    no.key_file = key_file;
    if ((rc = flagpost_notifier_new(&no, &notifier)) != FLAGPOST_OK) {
        status = fail("notifier", rc);
        goto out;
    }

    /* The service loop: wait for a raise (instead of sleeping between polls),
     * then the vendor's checks. */
    int notified = 0;
    for (int round = 0; round < 20; round++) {
        rc = flagpost_listener_wait(listener, 2000);
        if (rc < 0) {
            status = fail("wait", rc);
            goto out;
        }
        if (flagpost_listener_check_reconnect(listener))
            printf("(re)connected: re-check everything\n");
        if (flagpost_listener_check_status_update(listener) == 1) {
            printf("HasStatusUpdate: look for new work\n");
            if (notified) {
                status = 0;
                break;
            }
        }
        if (flagpost_listener_check_non_status_update(listener) == 1)
            printf("HasNonStatusUpdate: refresh views\n");
        if (flagpost_listener_check_channel_update(listener) == 1)
            printf("channel update: reload\n");
        if (flagpost_listener_check_channel_shutdown(listener) == 1)
            printf("channel shutdown: stop\n");
        if (!notified && flagpost_listener_state(listener) == FLAGPOST_LISTENING) {
            /* NotifyStatusUpdate, all channels; confirmed: the broker acks */
            if ((rc = flagpost_notify_status_update_confirmed(notifier, NULL, 2000)) != FLAGPOST_OK) {
                status = fail("notify", rc);
                goto out;
            }
            printf("notified\n");
            notified = 1;
        }
    }
    if (status != 0)
        fprintf(stderr, "wake: no status update came\n");

out:
    flagpost_listener_free(listener); /* StopChangeListening */
    flagpost_notifier_free(notifier);
    flagpost_broker_free(broker);
    return status;
}
