/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-callers.h"

typedef struct
{
  SbCallerFunc func;
  gpointer     user_data;
} SbPendingCall;

typedef struct
{
  gboolean known;
  guint32  uid;
  GQueue   pending;   /* SbPendingCall*, while the bus has not answered */
} SbCaller;

struct _SbCallers
{
  GObject          parent_instance;

  GDBusConnection *connection;
  GCancellable    *cancellable;
  GHashTable      *callers;   /* unique name → SbCaller* */
  guint            owner_changed_id;
};

enum { SIGNAL_VANISHED, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (SbCallers, sb_callers, G_TYPE_OBJECT)

static void
sb_caller_free (SbCaller *caller)
{
  g_queue_clear_full (&caller->pending, g_free);
  g_free (caller);
}

static void
on_name_owner_changed (GDBusConnection *connection,
                       const char      *sender_name,
                       const char      *object_path,
                       const char      *interface_name,
                       const char      *signal_name,
                       GVariant        *parameters,
                       gpointer         user_data)
{
  SbCallers *self = user_data;
  const char *name, *old_owner, *new_owner;
  SbCaller *caller;

  g_variant_get (parameters, "(&s&s&s)", &name, &old_owner, &new_owner);
  if (*new_owner != '\0' || name[0] != ':')
    return;
  /* A lookup in flight will fail now that the name is gone, and answers
   * its waiting calls then; none of them ran, so nothing can be owed. */
  caller = g_hash_table_lookup (self->callers, name);
  if (caller == NULL || !caller->known)
    return;
  g_hash_table_remove (self->callers, name);
  g_signal_emit (self, signals[SIGNAL_VANISHED], 0, name);
}

static void
sb_callers_dispose (GObject *object)
{
  SbCallers *self = SB_CALLERS (object);

  g_cancellable_cancel (self->cancellable);
  if (self->owner_changed_id != 0)
    g_dbus_connection_signal_unsubscribe (self->connection, self->owner_changed_id);
  self->owner_changed_id = 0;
  g_clear_object (&self->cancellable);
  g_clear_object (&self->connection);
  g_clear_pointer (&self->callers, g_hash_table_unref);
  G_OBJECT_CLASS (sb_callers_parent_class)->dispose (object);
}

static void
sb_callers_class_init (SbCallersClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = sb_callers_dispose;

  /* A unique name that called sockbridged went away. */
  signals[SIGNAL_VANISHED] = g_signal_new ("vanished", G_TYPE_FROM_CLASS (klass),
                                           G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                           G_TYPE_NONE, 1, G_TYPE_STRING);
}

static void
sb_callers_init (SbCallers *self)
{
  self->cancellable = g_cancellable_new ();
  self->callers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         (GDestroyNotify) sb_caller_free);
}

SbCallers *
sb_callers_new (GDBusConnection *connection)
{
  SbCallers *self = g_object_new (SB_TYPE_CALLERS, NULL);

  self->connection = g_object_ref (connection);
  self->owner_changed_id =
    g_dbus_connection_signal_subscribe (connection, "org.freedesktop.DBus",
                                        "org.freedesktop.DBus", "NameOwnerChanged",
                                        "/org/freedesktop/DBus", NULL,
                                        G_DBUS_SIGNAL_FLAGS_NONE,
                                        on_name_owner_changed, self, NULL);
  return self;
}

typedef struct
{
  SbCallers *self;
  char      *sender;
} SbLookup;

static void
run_pending (SbCaller     *caller,
             const GError *error)
{
  SbPendingCall *call;

  while ((call = g_queue_pop_head (&caller->pending)) != NULL) {
    call->func (caller->uid, error, call->user_data);
    g_free (call);
  }
}

static void
on_unix_user (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autofree SbLookup *lookup = user_data;
  g_autofree char *sender = lookup->sender;
  g_autoptr(GVariant) reply = NULL;
  g_autoptr(GError) error = NULL;
  SbCaller *caller;

  reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  caller = g_hash_table_lookup (lookup->self->callers, sender);
  if (caller == NULL)
    return;
  if (reply != NULL) {
    caller->known = TRUE;
    g_variant_get (reply, "(u)", &caller->uid);
    run_pending (caller, NULL);
    return;
  }
  /* Forget it: the name is gone, or the next call may ask again. */
  g_hash_table_steal (lookup->self->callers, sender);
  run_pending (caller, error);
  sb_caller_free (caller);
}

static void
ask_bus (SbCallers  *self,
         const char *sender)
{
  SbLookup *lookup = g_new (SbLookup, 1);

  lookup->self = self;
  lookup->sender = g_strdup (sender);
  g_dbus_connection_call (self->connection, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                          "org.freedesktop.DBus", "GetConnectionUnixUser",
                          g_variant_new ("(s)", sender), G_VARIANT_TYPE ("(u)"),
                          G_DBUS_CALL_FLAGS_NONE, -1, self->cancellable,
                          on_unix_user, lookup);
}

void
sb_callers_run (SbCallers    *self,
                const char   *sender,
                SbCallerFunc  func,
                gpointer      user_data)
{
  SbCaller *caller = g_hash_table_lookup (self->callers, sender);
  SbPendingCall *call;

  if (caller != NULL && caller->known) {
    func (caller->uid, NULL, user_data);
    return;
  }
  if (caller == NULL) {
    caller = g_new0 (SbCaller, 1);
    g_queue_init (&caller->pending);
    g_hash_table_insert (self->callers, g_strdup (sender), caller);
    ask_bus (self, sender);
  }
  call = g_new (SbPendingCall, 1);
  call->func = func;
  call->user_data = user_data;
  g_queue_push_tail (&caller->pending, call);
}
