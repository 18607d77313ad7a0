/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-poller.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Events taken per dispatch; more wait for the next iteration, which keeps
 * the main loop fair to the bus and the timers. */
#define SB_POLLER_BATCH 64

struct _SbWatch
{
  int          fd;
  guint32      events;       /* EPOLL* bits registered */
  SbWatchFunc  func;
  gpointer     user_data;
  gboolean     dead;
};

typedef struct
{
  GSource    source;
  int        epfd;
  gboolean   dispatching;
  GPtrArray *graveyard;      /* watches freed during a dispatch */
} SbPoller;

static SbPoller *sb_poller;  /* of the main context; the daemon is single-threaded */

static guint32
to_epoll (GIOCondition events)
{
  return ((events & G_IO_IN) ? EPOLLIN : 0) | ((events & G_IO_OUT) ? EPOLLOUT : 0);
}

static GIOCondition
from_epoll (guint32 events)
{
  return ((events & EPOLLIN) ? G_IO_IN : 0) | ((events & EPOLLOUT) ? G_IO_OUT : 0) |
         ((events & EPOLLHUP) ? G_IO_HUP : 0) | ((events & EPOLLERR) ? G_IO_ERR : 0);
}

static gboolean
poller_dispatch (GSource     *source,
                 GSourceFunc  callback,
                 gpointer     user_data)
{
  SbPoller *self = (SbPoller *) source;
  struct epoll_event events[SB_POLLER_BATCH];
  int n = epoll_wait (self->epfd, events, SB_POLLER_BATCH, 0);

  self->dispatching = TRUE;
  for (int i = 0; i < n; i++) {
    SbWatch *watch = events[i].data.ptr;

    if (!watch->dead)
      watch->func (watch, from_epoll (events[i].events), watch->user_data);
  }
  self->dispatching = FALSE;
  g_ptr_array_set_size (self->graveyard, 0);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs poller_funcs = { .dispatch = poller_dispatch };

static SbPoller *
get_poller (void)
{
  SbPoller *self;
  int epfd;

  if (sb_poller != NULL)
    return sb_poller;
  epfd = epoll_create1 (EPOLL_CLOEXEC);
  if (epfd < 0)
    g_error ("cannot create an epoll instance: %s", g_strerror (errno));
  self = (SbPoller *) g_source_new (&poller_funcs, sizeof (SbPoller));
  self->epfd = epfd;
  self->graveyard = g_ptr_array_new_with_free_func (g_free);
  g_source_set_static_name (&self->source, "[sockbridge] connections");
  g_source_add_unix_fd (&self->source, epfd, G_IO_IN);
  g_source_attach (&self->source, NULL);
  sb_poller = self;
  return self;
}

static void
control (SbWatch *watch,
         int      op)
{
  struct epoll_event event = { .events = watch->events, .data.ptr = watch };

  if (epoll_ctl (get_poller ()->epfd, op, watch->fd, &event) != 0 && op != EPOLL_CTL_DEL)
    g_critical ("epoll_ctl on descriptor %d failed: %s", watch->fd, g_strerror (errno));
}

SbWatch *
sb_watch_new (int           fd,
              GIOCondition  events,
              SbWatchFunc   func,
              gpointer      user_data)
{
  SbWatch *watch = g_new0 (SbWatch, 1);

  watch->fd = fd;
  watch->events = to_epoll (events);
  watch->func = func;
  watch->user_data = user_data;
  control (watch, EPOLL_CTL_ADD);
  return watch;
}

void
sb_watch_set_events (SbWatch      *watch,
                     GIOCondition  events)
{
  guint32 wanted = to_epoll (events);

  if (watch->events == wanted)
    return;
  watch->events = wanted;
  control (watch, EPOLL_CTL_MOD);
}

/* Must come before the descriptor is closed. An event for a watch freed
 * during a dispatch may still be in that dispatch's batch, so it is only
 * buried then. */
void
sb_watch_free (SbWatch *watch)
{
  SbPoller *self = get_poller ();

  control (watch, EPOLL_CTL_DEL);
  if (!self->dispatching) {
    g_free (watch);
    return;
  }
  watch->dead = TRUE;
  g_ptr_array_add (self->graveyard, watch);
}
