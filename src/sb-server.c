/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-server.h"

#include "sb-allow.h"
#include "sb-error.h"
#include "sb-statistics.h"
#include "sb-tcp-server.h"
#include "sb-udp-server.h"

typedef struct
{
  SbServerConfig *config;
  SbServerEvents  events;
  gpointer        user_data;
  GHashTable     *clients;    /* SbClient → itself, owned */
  char           *creator;    /* unique bus name, for exit-with-caller */
  GVariant       *identifier; /* the config's, as a signal argument */
  gboolean        started;
  gboolean        paused;
  SbAllowList    *allow;       /* the config's allow-from, once needed */
  guint64         denied;      /* peers turned away since the last log line */
  gint64          denied_logged_at;
  gboolean        denied_logged;
  guint           held;       /* places held by connections not yet clients */
} SbServerPrivate;

G_DEFINE_ABSTRACT_TYPE_WITH_PRIVATE (SbServer, sb_server, G_TYPE_OBJECT)

static guint sb_total_clients;
static guint sb_total_limit = G_MAXUINT;
static guint sb_total_held;

void
sb_server_set_total_limit (guint limit)
{
  sb_total_limit = limit;
}

static void
sb_server_finalize (GObject *object)
{
  SbServerPrivate *priv = sb_server_get_instance_private (SB_SERVER (object));

  g_clear_pointer (&priv->clients, g_hash_table_unref);
  g_clear_pointer (&priv->config, sb_server_config_free);
  g_free (priv->creator);
  g_clear_pointer (&priv->identifier, g_variant_unref);
  g_clear_pointer (&priv->allow, sb_allow_list_free);
  G_OBJECT_CLASS (sb_server_parent_class)->finalize (object);
}

static void
sb_server_class_init (SbServerClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = sb_server_finalize;
}

static void
sb_server_init (SbServer *self)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  priv->clients = g_hash_table_new_full (NULL, NULL, g_object_unref, NULL);
}

SbServer *
sb_server_new (const SbServerConfig *config,
               const SbServerEvents *events,
               gpointer              user_data)
{
  SbServer *self;
  SbServerPrivate *priv;

  self = g_object_new (config->use_udp ? SB_TYPE_UDP_SERVER : SB_TYPE_TCP_SERVER, NULL);
  priv = sb_server_get_instance_private (self);
  priv->config = sb_server_config_copy (config);
  priv->identifier = g_variant_ref_sink (g_variant_new_string (config->identifier));
  priv->events = *events;
  priv->user_data = user_data;
  return self;
}

gboolean
sb_server_start (SbServer  *self,
                 GError   **error)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  g_return_val_if_fail (!priv->started, FALSE);

  if (!SB_SERVER_GET_CLASS (self)->start (self, error))
    return FALSE;
  priv->started = TRUE;
  return TRUE;
}

/* Disconnecting a client removes it from the table, so take them one at a
 * time rather than iterating a table that changes underneath. */
void
sb_server_stop (SbServer *self)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);
  GHashTableIter iter;
  gpointer client;

  if (!priv->started)
    return;
  priv->started = FALSE;

  for (;;) {
    g_hash_table_iter_init (&iter, priv->clients);
    if (!g_hash_table_iter_next (&iter, &client, NULL))
      break;
    sb_client_disconnect (client);
  }
  SB_SERVER_GET_CLASS (self)->stop (self);
}

const SbServerConfig *
sb_server_get_config (SbServer *self)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  return priv->config;
}

guint16
sb_server_get_port (SbServer *self)
{
  return sb_server_get_config (self)->port;
}

gboolean
sb_server_get_use_udp (SbServer *self)
{
  return sb_server_get_config (self)->use_udp;
}

const char *
sb_server_get_identifier (SbServer *self)
{
  return sb_server_get_config (self)->identifier;
}

/* Borrowed; kept so that no signal builds it again. */
GVariant *
sb_server_get_identifier_variant (SbServer *self)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  return priv->identifier;
}

guint
sb_server_get_n_clients (SbServer *self)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  return g_hash_table_size (priv->clients);
}

gboolean
sb_server_is_full (SbServer *self)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  return g_hash_table_size (priv->clients) + priv->held >= priv->config->max_connections ||
         sb_total_clients + sb_total_held >= sb_total_limit;
}

const char *
sb_server_get_creator (SbServer *self)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  return priv->creator;
}

void
sb_server_set_creator (SbServer   *self,
                       const char *unique_name)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  g_free (priv->creator);
  priv->creator = g_strdup (unique_name);
}

void
sb_server_set_paused (SbServer *self,
                      gboolean  paused)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);
  GHashTableIter iter;
  gpointer client;

  if (priv->paused == paused)
    return;
  priv->paused = paused;
  g_hash_table_iter_init (&iter, priv->clients);
  while (g_hash_table_iter_next (&iter, &client, NULL))
    sb_client_set_paused (client, paused);
}

gboolean
sb_server_get_paused (SbServer *self)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  return priv->paused;
}

void
sb_server_set_bound_port (SbServer *self,
                          guint16   port)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  priv->config->port = port;
}

void
sb_server_client_online (SbServer *self,
                         SbClient *client)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  g_hash_table_add (priv->clients, g_object_ref (client));
  sb_total_clients++;
  priv->events.client_online (self, client, priv->user_data);
  if (priv->paused)
    sb_client_set_paused (client, TRUE);
}

void
sb_server_client_data (SbServer     *self,
                       SbClient     *client,
                       const guint8 *data,
                       gsize         len)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  priv->events.client_data (self, client, data, len, priv->user_data);
}

/* The table holds the last reference the server has; callers that still
 * use @client afterwards hold their own. */
void
sb_server_client_offline (SbServer *self,
                          SbClient *client)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);
  g_autoptr(SbClient) leaving = g_object_ref (client);

  if (!g_hash_table_remove (priv->clients, leaving))
    return;
  sb_total_clients--;
  priv->events.client_offline (self, leaving, priv->user_data);
}

/* Turns a bind failure into the contract's error, naming the port. */
void
sb_server_set_error_from_io (GError   **error,
                             SbServer  *self,
                             GError    *io_error)
{
  const SbServerConfig *config = sb_server_get_config (self);
  const char *proto = config->use_udp ? "udp" : "tcp";

  if (g_error_matches (io_error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE))
    g_set_error (error, SB_ERROR, SB_ERROR_ADDRESS_IN_USE,
                 "port %u/%s is already in use by another process",
                 config->port, proto);
  else if (g_error_matches (io_error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED))
    g_set_error (error, SB_ERROR, SB_ERROR_PERMISSION_DENIED,
                 "sockbridged may not bind port %u/%s: %s",
                 config->port, proto, io_error->message);
  else
    g_set_error (error, SB_ERROR, SB_ERROR_FAILED,
                 "cannot listen on port %u/%s: %s",
                 config->port, proto, io_error->message);
}

/* A complete frame ends with the whole delimiter, unless a cut or a flush
 * (max-message-bytes, flush-timeout-ms) already delivered its first bytes
 * in the frame before: such a frame is only the rest of a delimiter, and
 * delivering it empty would announce an empty message that never was. */
void
sb_server_client_frame (SbServer     *self,
                        SbClient     *client,
                        const guint8 *data,
                        gsize         len,
                        gboolean      complete)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  if (complete && priv->config->strip_delimiter) {
    gsize delimiter_len = g_bytes_get_size (priv->config->delimiter);

    if (len < delimiter_len)
      return;
    len -= delimiter_len;
  }
  sb_server_client_data (self, client, data, len);
}

/* Peers turned away by allow-from are logged at most this often per
 * server: a scan from a foreign network must not flood the journal, yet
 * an administrator who wonders why a device gets no answer finds it. */
#define SB_DENIED_LOG_INTERVAL_US (60 * G_USEC_PER_SEC)

static void
deny (SbServer     *self,
      GInetAddress *address)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);
  g_autofree char *text = NULL;
  gint64 now = g_get_monotonic_time ();
  gboolean udp = priv->config->use_udp;

  if (udp)
    sb_statistics.udp_datagrams_denied++;
  else
    sb_statistics.connections_denied++;
  priv->denied++;
  if (priv->denied_logged && now - priv->denied_logged_at < SB_DENIED_LOG_INTERVAL_US)
    return;
  text = sb_inet_address_to_string (address);
  g_message ("port %u/%s: %s from %s, which allow-from does not name (%" G_GUINT64_FORMAT
             " turned away since the last such message)",
             priv->config->port, udp ? "udp" : "tcp",
             udp ? "dropped a datagram" : "closed a connection", text, priv->denied);
  priv->denied = 0;
  priv->denied_logged = TRUE;
  priv->denied_logged_at = now;
}

gboolean
sb_server_admits (SbServer       *self,
                  GSocketAddress *remote)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);
  GInetAddress *address;

  if (priv->config->allow_from == NULL)
    return TRUE;
  if (priv->allow == NULL)
    priv->allow = sb_allow_list_new ((const char * const *) priv->config->allow_from);
  address = g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (remote));
  if (sb_allow_list_admits (priv->allow, address))
    return TRUE;
  deny (self, address);
  return FALSE;
}

void
sb_server_hold_place (SbServer *self)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  priv->held++;
  sb_total_held++;
}

void
sb_server_release_place (SbServer *self)
{
  SbServerPrivate *priv = sb_server_get_instance_private (self);

  g_return_if_fail (priv->held > 0);
  priv->held--;
  sb_total_held--;
}
