/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-backlog.h"

struct _SbBacklog
{
  GObject          parent_instance;

  GDBusConnection *connection;
  GCancellable    *cancellable;
  SbBacklogFunc    func;
  gpointer         user_data;
  guint64          emitted;     /* bytes handed to GDBus */
  guint64          confirmed;   /* bytes known written to the bus */
  guint64          in_flight;   /* emitted when the running flush began; 0 if none */
  guint64          stalls;
  gboolean         congested;
};

G_DEFINE_FINAL_TYPE (SbBacklog, sb_backlog, G_TYPE_OBJECT)

static void start_flush (SbBacklog *self);

static void
set_congested (SbBacklog *self,
               gboolean   congested)
{
  if (self->congested == congested)
    return;
  self->congested = congested;
  if (congested) {
    self->stalls++;
    g_message ("the bus is not keeping up (%" G_GUINT64_FORMAT " bytes of signals queued); "
               "pausing reads until it drains", self->emitted - self->confirmed);
  } else {
    g_message ("the bus drained; reading again");
  }
  self->func (congested, self->user_data);
}

static void
on_flushed (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  g_autoptr(GError) error = NULL;
  SbBacklog *self;

  if (!g_dbus_connection_flush_finish (G_DBUS_CONNECTION (source), result, &error) &&
      g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  self = user_data;
  /* A closed connection confirms nothing, but nothing will ever drain
   * either: stop counting rather than pause forever. */
  self->confirmed = error == NULL ? self->in_flight : self->emitted;
  self->in_flight = 0;
  if (self->congested && self->emitted - self->confirmed < SB_BACKLOG_LOW)
    set_congested (self, FALSE);
  if (self->emitted - self->confirmed >= SB_BACKLOG_STEP)
    start_flush (self);
}

static void
start_flush (SbBacklog *self)
{
  self->in_flight = self->emitted;
  g_dbus_connection_flush (self->connection, self->cancellable, on_flushed, self);
}

void
sb_backlog_add (SbBacklog *self,
                gsize      bytes)
{
  guint64 pending;

  self->emitted += bytes;
  pending = self->emitted - self->confirmed;
  if (self->in_flight == 0 && pending >= SB_BACKLOG_STEP)
    start_flush (self);
  if (!self->congested && pending >= SB_BACKLOG_HIGH)
    set_congested (self, TRUE);
}

gboolean
sb_backlog_is_congested (SbBacklog *self)
{
  return self->congested;
}

guint64
sb_backlog_get_pending (SbBacklog *self)
{
  return self->emitted - self->confirmed;
}

guint64
sb_backlog_get_stalls (SbBacklog *self)
{
  return self->stalls;
}

static void
sb_backlog_dispose (GObject *object)
{
  SbBacklog *self = SB_BACKLOG (object);

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  g_clear_object (&self->connection);
  G_OBJECT_CLASS (sb_backlog_parent_class)->dispose (object);
}

static void
sb_backlog_class_init (SbBacklogClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = sb_backlog_dispose;
}

static void
sb_backlog_init (SbBacklog *self)
{
  self->cancellable = g_cancellable_new ();
}

SbBacklog *
sb_backlog_new (GDBusConnection *connection,
                SbBacklogFunc    func,
                gpointer         user_data)
{
  SbBacklog *self = g_object_new (SB_TYPE_BACKLOG, NULL);

  self->connection = g_object_ref (connection);
  self->func = func;
  self->user_data = user_data;
  return self;
}
