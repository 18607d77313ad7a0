/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-tls.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "sb-error.h"
#include "sb-poller.h"
#include "sb-source.h"
#include "sb-statistics.h"
#include "sb-tcp-connection.h"
#include "sb-tls-credentials.h"

/* The one thing sockbridged reads of TLS itself, with MSG_PEEK: the
 * header of the client's first record (content type, version, length),
 * to start the handshake only once that record, the ClientHello, is
 * complete. GIO runs each handshake on a thread of GLib's shared pool
 * (10 threads, then slowly more), so a client that connects and sends
 * nothing, a little, or no TLS at all never takes one. */
#define SB_TLS_RECORD_HEADER    5
#define SB_TLS_HANDSHAKE_RECORD 0x16
#define SB_TLS_MAX_RECORD       (16384 + 2048)  /* RFC 8446 5.2: 2^14 + 2048 at most */

typedef struct
{
  guint64 completed;
  guint64 failed;
  guint64 timed_out;
  guint64 in_progress;
} SbTlsCounters;

static SbTlsCounters sb_tls_counters;

struct _SbTls
{
  SbServer               *server;       /* unowned: it owns us */
  GTlsCertificate        *certificate;
  GTlsDatabase           *database;     /* verifies clients; NULL when none are asked */
  GTlsAuthenticationMode  mode;
  guint                   timeout_ms;
  GHashTable             *handshakes;   /* SbHandshake*, a set */
};

/* One accepted connection on its way to becoming a client. */
typedef struct
{
  SbTls             *tls;         /* NULL once its server is gone */
  GSocketConnection *connection;
  GSocket           *socket;      /* the connection's */
  char              *peer;        /* "address port", for messages */
  SbWatch           *watch;       /* while waiting for the ClientHello */
  gsize              needed;      /* its bytes, once known */
  GSource           *deadline;
  GCancellable      *cancellable;
  GIOStream         *stream;      /* the GTlsServerConnection, once started */
  gboolean           timed_out;
} SbHandshake;

static guint16
port_of (SbTls *tls)
{
  return sb_server_get_port (tls->server);
}

/* ---- ending a handshake ------------------------------------------------------ */

/* It no longer holds a place of its server. */
static void
detach (SbHandshake *hs)
{
  if (hs->tls == NULL)
    return;
  g_hash_table_remove (hs->tls->handshakes, hs);
  sb_server_release_place (hs->tls->server);
  hs->tls = NULL;
}

/* @close: the socket is not a client's. It closes before the TLS stream
 * goes, whose disposal would otherwise try to say goodbye on it. */
static void
handshake_free (SbHandshake *hs,
                gboolean     close)
{
  detach (hs);
  g_clear_pointer (&hs->watch, sb_watch_free);
  sb_clear_source (&hs->deadline);
  if (close)
    g_socket_close (hs->socket, NULL);
  g_clear_object (&hs->cancellable);
  /* A client's stream lives on; a renegotiation must not find us. */
  if (hs->stream != NULL)
    g_signal_handlers_disconnect_by_data (hs->stream, hs);
  g_clear_object (&hs->stream);
  g_clear_object (&hs->connection);
  g_free (hs->peer);
  g_free (hs);
  sb_tls_counters.in_progress--;
}

static void
fail (SbHandshake *hs,
      const char  *reason)
{
  guint16 port = port_of (hs->tls);

  g_debug ("port %u/tls: no TLS with %s: %s", port, hs->peer, reason);
  if (hs->timed_out)
    sb_statistics_count (&sb_tls_counters.timed_out,
                         "port %u/tls: the TLS handshake with %s timed out after %u ms; "
                         "closed it", port, hs->peer, hs->tls->timeout_ms);
  else
    sb_statistics_count (&sb_tls_counters.failed,
                         "port %u/tls: the TLS handshake with %s failed: %s; closed it",
                         port, hs->peer, reason);
  handshake_free (hs, TRUE);
}

/* ---- the handshake ---------------------------------------------------------------- */

static const char *
protocol_name (GTlsProtocolVersion version)
{
  switch (version) {
  case G_TLS_PROTOCOL_VERSION_SSL_3_0: return "SSL 3.0";
  case G_TLS_PROTOCOL_VERSION_TLS_1_0: return "TLS 1.0";
  case G_TLS_PROTOCOL_VERSION_TLS_1_1: return "TLS 1.1";
  case G_TLS_PROTOCOL_VERSION_TLS_1_2: return "TLS 1.2";
  case G_TLS_PROTOCOL_VERSION_TLS_1_3: return "TLS 1.3";
  case G_TLS_PROTOCOL_VERSION_DTLS_1_0: return "DTLS 1.0";
  case G_TLS_PROTOCOL_VERSION_DTLS_1_2: return "DTLS 1.2";
  case G_TLS_PROTOCOL_VERSION_UNKNOWN:
  default: return "an unknown protocol version";
  }
}

static void
become_client (SbHandshake *hs)
{
  SbServer *server = hs->tls->server;
  g_autoptr(SbTcpConnection) client = NULL;
  g_autoptr(GError) error = NULL;

  client = sb_tcp_connection_new_tls (server, hs->connection, G_TLS_CONNECTION (hs->stream),
                                      &error);
  if (client == NULL) {
    fail (hs, error->message);
    return;
  }
  g_debug ("port %u/tls: %s with %s", port_of (hs->tls),
           protocol_name (g_tls_connection_get_protocol_version (G_TLS_CONNECTION (hs->stream))),
           hs->peer);
  sb_tls_counters.completed++;
  sb_statistics.connections_accepted++;
  /* The place it held becomes its place as a client. */
  detach (hs);
  handshake_free (hs, FALSE);
  sb_server_client_online (server, SB_CLIENT (client));
  sb_tcp_connection_start (client);
}

/* GnuTLS may offer versions older than TLS 1.2, depending on the system;
 * GIO cannot refuse them per connection, so they are refused here. */
static gboolean
check_protocol (SbHandshake *hs)
{
  GTlsProtocolVersion version;
  g_autofree char *reason = NULL;

  version = g_tls_connection_get_protocol_version (G_TLS_CONNECTION (hs->stream));
  if (version == G_TLS_PROTOCOL_VERSION_TLS_1_2 || version == G_TLS_PROTOCOL_VERSION_TLS_1_3)
    return TRUE;
  reason = g_strdup_printf ("it negotiated %s; sockbridged needs TLS 1.2 or newer",
                            protocol_name (version));
  fail (hs, reason);
  return FALSE;
}

static void
on_handshake_done (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  SbHandshake *hs = user_data;
  g_autoptr(GError) error = NULL;
  gboolean done = g_tls_connection_handshake_finish (G_TLS_CONNECTION (source), result, &error);

  if (hs->tls == NULL) {
    handshake_free (hs, TRUE);
    return;
  }
  sb_clear_source (&hs->deadline);
  if (!done)
    fail (hs, error->message);
  else if (check_protocol (hs))
    become_client (hs);
}

/* GIO asks a server about every client certificate, even a valid one:
 * valid against the server's CAs is what is accepted. The reason for a
 * refusal goes to the debug log; the handshake fails, and that is
 * counted. */
static gboolean
on_accept_certificate (GTlsConnection       *connection,
                       GTlsCertificate      *certificate,
                       GTlsCertificateFlags  errors,
                       gpointer              user_data)
{
  SbHandshake *hs = user_data;

  if (errors != 0)
    g_debug ("port %u/tls: refusing the certificate of %s (GTlsCertificateFlags 0x%x)",
             hs->tls != NULL ? port_of (hs->tls) : 0, hs->peer, errors);
  return errors == 0;
}

static void
start_handshake (SbHandshake *hs)
{
  SbTls *tls = hs->tls;
  GTlsBackend *backend = g_tls_backend_get_default ();
  g_autoptr(GError) error = NULL;

  g_clear_pointer (&hs->watch, sb_watch_free);
  g_socket_set_option (hs->socket, SOL_SOCKET, SO_RCVLOWAT, 1, NULL);
  /* g_tls_server_connection_new() with the database set at once: the
   * default one, the system's, would otherwise be loaded into every
   * connection (see sb_tls_load_client_ca()). close_notify is not
   * required: devices often just close, and what they sent is delivered
   * as it arrives anyway. */
  hs->stream = g_initable_new (g_tls_backend_get_server_connection_type (backend), NULL, &error,
                               "base-io-stream", hs->connection,
                               "certificate", tls->certificate,
                               "database", tls->database,
                               "authentication-mode", tls->mode,
                               "require-close-notify", FALSE,
                               NULL);
  if (hs->stream == NULL) {
    fail (hs, error->message);
    return;
  }
  g_signal_connect (hs->stream, "accept-certificate", G_CALLBACK (on_accept_certificate), hs);
  hs->cancellable = g_cancellable_new ();
  g_tls_connection_handshake_async (G_TLS_CONNECTION (hs->stream), G_PRIORITY_DEFAULT,
                                    hs->cancellable, on_handshake_done, hs);
}

/* ---- waiting for the ClientHello ------------------------------------------------ */

static gboolean
wait_for (SbHandshake *hs,
          gsize        bytes)
{
  hs->needed = bytes;
  return g_socket_set_option (hs->socket, SOL_SOCKET, SO_RCVLOWAT, (gint) bytes, NULL);
}

/* SO_RCVLOWAT holds the wake-up back until the bytes asked for are there,
 * so a wake-up with fewer means the client closed (or reset). */
static void
on_first_bytes (SbWatch      *watch,
                GIOCondition  condition,
                gpointer      user_data)
{
  SbHandshake *hs = user_data;
  guint8 header[SB_TLS_RECORD_HEADER];
  gssize n = recv (g_socket_get_fd (hs->socket), header, sizeof header, MSG_PEEK | MSG_DONTWAIT);
  int available = 0;
  gsize needed;

  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n > 0 && (header[0] != SB_TLS_HANDSHAKE_RECORD || (n > 1 && header[1] != 3))) {
    fail (hs, "it sent no TLS handshake (plain TCP on a TLS port?)");
    return;
  }
  if (n < SB_TLS_RECORD_HEADER) {
    fail (hs, n < 0 ? g_strerror (errno) : "it closed before its handshake");
    return;
  }
  needed = SB_TLS_RECORD_HEADER + ((gsize) header[3] << 8 | header[4]);
  if (needed > SB_TLS_RECORD_HEADER + SB_TLS_MAX_RECORD) {
    fail (hs, "its first record is longer than TLS allows (not TLS?)");
    return;
  }
  if (ioctl (g_socket_get_fd (hs->socket), FIONREAD, &available) == 0 && (gsize) available >= needed)
    start_handshake (hs);
  else if (hs->needed == needed || !wait_for (hs, needed))
    fail (hs, "it closed before its handshake");
}

static gboolean
on_deadline (gpointer user_data)
{
  SbHandshake *hs = user_data;

  g_clear_pointer (&hs->deadline, g_source_unref);
  hs->timed_out = TRUE;
  /* A handshake in progress ends through its callback. */
  if (hs->cancellable != NULL)
    g_cancellable_cancel (hs->cancellable);
  else
    fail (hs, "timed out");
  return G_SOURCE_REMOVE;
}

static char *
describe_peer (GSocketConnection *connection)
{
  g_autoptr(GSocketAddress) remote = g_socket_connection_get_remote_address (connection, NULL);
  g_autofree char *address = NULL;

  if (!G_IS_INET_SOCKET_ADDRESS (remote))
    return g_strdup ("a client");
  address = sb_inet_address_to_string (
    g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (remote)));
  return g_strdup_printf ("%s port %u", address,
                          g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (remote)));
}

void
sb_tls_accept (SbTls             *self,
               GSocketConnection *connection)
{
  SbHandshake *hs = g_new0 (SbHandshake, 1);

  hs->tls = self;
  hs->connection = g_object_ref (connection);
  hs->socket = g_socket_connection_get_socket (connection);
  hs->peer = describe_peer (connection);
  g_hash_table_add (self->handshakes, hs);
  sb_server_hold_place (self->server);
  sb_tls_counters.in_progress++;
  hs->deadline = sb_deadline_source_new (g_get_monotonic_time () +
                                         self->timeout_ms * G_GINT64_CONSTANT (1000),
                                         on_deadline, hs, NULL);
  /* GIO's TLS threads wait for the client with blocking reads and
   * writes: the socket's timeout bounds each wait, also for a TLS 1.2
   * renegotiation the client starts later, which no cancellable of ours
   * reaches. The daemon's own reads and writes never block. */
  g_socket_set_timeout (hs->socket, (self->timeout_ms + 999) / 1000);
  if (!wait_for (hs, SB_TLS_RECORD_HEADER)) {
    fail (hs, "cannot watch its socket");
    return;
  }
  hs->watch = sb_watch_new (g_socket_get_fd (hs->socket), G_IO_IN, on_first_bytes, hs);
}

/* ---- the server's side -------------------------------------------------------------- */

static GTlsAuthenticationMode
authentication_mode (SbTlsClientAuth auth)
{
  switch (auth) {
  case SB_TLS_CLIENT_AUTH_NONE: return G_TLS_AUTHENTICATION_NONE;
  case SB_TLS_CLIENT_AUTH_REQUIRE: return G_TLS_AUTHENTICATION_REQUIRED;
  case SB_TLS_CLIENT_AUTH_REQUEST:
  default: return G_TLS_AUTHENTICATION_REQUESTED;
  }
}

SbTls *
sb_tls_new (SbServer  *server,
            GError   **error)
{
  const SbTlsConfig *config = sb_server_get_config (server)->tls;
  g_autoptr(GTlsCertificate) certificate = NULL;
  g_autoptr(GTlsDatabase) database = NULL;
  SbTls *self;

  g_return_val_if_fail (config != NULL, NULL);

  if (!g_tls_backend_supports_tls (g_tls_backend_get_default ())) {
    g_set_error_literal (error, SB_ERROR, SB_ERROR_FAILED,
                         "GIO has no TLS backend here: install glib-networking");
    return NULL;
  }
  certificate = sb_tls_load_certificate (config, error);
  if (certificate == NULL)
    return NULL;
  if (config->client_auth != SB_TLS_CLIENT_AUTH_NONE &&
      (database = sb_tls_load_client_ca (config, error)) == NULL)
    return NULL;
  self = g_new0 (SbTls, 1);
  self->server = server;
  self->certificate = g_steal_pointer (&certificate);
  self->database = g_steal_pointer (&database);
  self->mode = authentication_mode (config->client_auth);
  self->timeout_ms = config->handshake_timeout_ms;
  self->handshakes = g_hash_table_new (NULL, NULL);
  return self;
}

void
sb_tls_free (SbTls *self)
{
  g_autoptr(GList) handshakes = NULL;

  if (self == NULL)
    return;
  handshakes = g_hash_table_get_keys (self->handshakes);
  for (GList *l = handshakes; l != NULL; l = l->next) {
    SbHandshake *hs = l->data;

    /* A handshake in progress owns its socket until its callback. */
    if (hs->cancellable != NULL) {
      detach (hs);
      sb_clear_source (&hs->deadline);
      g_cancellable_cancel (hs->cancellable);
    } else {
      handshake_free (hs, TRUE);
    }
  }
  g_hash_table_unref (self->handshakes);
  g_clear_object (&self->certificate);
  g_clear_object (&self->database);
  g_free (self);
}

/* ---- statistics, connection info ------------------------------------------------- */

void
sb_tls_add_statistics (GVariantBuilder *builder)
{
  g_variant_builder_add (builder, "{st}", "tls-handshakes", sb_tls_counters.completed);
  g_variant_builder_add (builder, "{st}", "tls-handshakes-failed", sb_tls_counters.failed);
  g_variant_builder_add (builder, "{st}", "tls-handshakes-timed-out", sb_tls_counters.timed_out);
  g_variant_builder_add (builder, "{st}", "tls-handshakes-in-progress", sb_tls_counters.in_progress);
}

void
sb_tls_describe (GTlsConnection  *connection,
                 GVariantBuilder *builder)
{
  g_autofree char *cipher = g_tls_connection_get_ciphersuite_name (connection);
  GTlsCertificate *peer = g_tls_connection_get_peer_certificate (connection);

  g_variant_builder_add (builder, "{sv}", "tls-version", g_variant_new_string (
    protocol_name (g_tls_connection_get_protocol_version (connection))));
  if (cipher != NULL)
    g_variant_builder_add (builder, "{sv}", "tls-cipher-suite", g_variant_new_string (cipher));
  if (peer != NULL) {
    g_autofree char *subject = g_tls_certificate_get_subject_name (peer);
    g_autofree char *issuer = g_tls_certificate_get_issuer_name (peer);

    if (subject != NULL)
      g_variant_builder_add (builder, "{sv}", "tls-client-certificate-subject",
                             g_variant_new_string (subject));
    if (issuer != NULL)
      g_variant_builder_add (builder, "{sv}", "tls-client-certificate-issuer",
                             g_variant_new_string (issuer));
  }
}
