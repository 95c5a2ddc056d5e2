#include "CSupport.h"
#include <pthread.h>
#include <signal.h>
#include <string.h>

static volatile sig_atomic_t stop_signal = 0;

static void record_stop(int signal_number) {
    if (stop_signal == 0) stop_signal = signal_number;
}

void meshlm_install_stop_signals(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = record_stop;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGUSR1, &action, NULL);
    // A parent may have started us with these blocked (test harnesses do): unblock them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int meshlm_stop_signal(void) { return stop_signal; }
