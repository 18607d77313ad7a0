/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-udp-server.h"

#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "sb-error.h"
#include "sb-framer.h"
#include "sb-source.h"
#include "sb-statistics.h"
#include "sb-tcp-connection.h"

/* Datagrams taken per wake-up (recvmmsg). */
#define SB_UDP_BATCH 16

/* A UDP peer is named by its source address (IPv4 as v4-mapped IPv6, so
 * both families share one table) and port. */
typedef struct
{
  guint8  address[16];
  guint16 port;
} SbPeerKey;

#define SB_TYPE_UDP_PEER (sb_udp_peer_get_type ())
G_DECLARE_FINAL_TYPE (SbUdpPeer, sb_udp_peer, SB, UDP_PEER, SbClient)

struct _SbUdpPeer
{
  SbClient        parent_instance;

  SbUdpServer    *server;      /* unowned */
  GSocketAddress *remote;
  SbPeerKey       key;
  gint64          last_heard;  /* monotonic µs */
  GList           lru_link;    /* in server->lru, data = self */
  gsize           queued;      /* bytes waiting in server->out */
  gboolean        gone;
};

G_DEFINE_FINAL_TYPE (SbUdpPeer, sb_udp_peer, SB_TYPE_CLIENT)

typedef struct
{
  SbUdpPeer      *peer;        /* owned; NULL for ServerSendTo */
  GSocketAddress *to;          /* owned */
  GBytes         *data;
  gsize          *queued;      /* the peer's or the server's count */
} SbOutDatagram;

struct _SbUdpServer
{
  SbServer    parent_instance;

  GSocket    *socket;
  GSource    *read_source;
  GSource    *write_source;
  GSource    *expiry_source;
  GHashTable *peers;           /* SbPeerKey* → SbUdpPeer*, unowned */
  GQueue      lru;             /* SbUdpPeer*, least recently heard first */
  GQueue      out;             /* SbOutDatagram*, oldest first */
  SbFramer   *framer;
  SbUdpPeer  *current;         /* whose datagram the framer is splitting */
  gsize       queued_to;       /* bytes of ServerSendTo datagrams in out */
};

G_DEFINE_FINAL_TYPE (SbUdpServer, sb_udp_server, SB_TYPE_SERVER)

static void forget_peer (SbUdpServer *self, SbUdpPeer *peer);
static void flush_out (SbUdpServer *self);

/* ---- peer key ---------------------------------------------------------- */

static guint
peer_key_hash (gconstpointer key)
{
  const SbPeerKey *k = key;
  guint h = k->port;

  for (gsize i = 0; i < sizeof k->address; i++)
    h = h * 31 + k->address[i];
  return h;
}

static gboolean
peer_key_equal (gconstpointer a,
                gconstpointer b)
{
  const SbPeerKey *ka = a, *kb = b;

  return ka->port == kb->port && memcmp (ka->address, kb->address, sizeof ka->address) == 0;
}

static void
peer_key_init (SbPeerKey      *key,
               GSocketAddress *address)
{
  GInetSocketAddress *inet = G_INET_SOCKET_ADDRESS (address);
  GInetAddress *ip = g_inet_socket_address_get_address (inet);
  const guint8 *bytes = g_inet_address_to_bytes (ip);

  memset (key, 0, sizeof *key);
  key->port = g_inet_socket_address_get_port (inet);
  if (g_inet_address_get_family (ip) == G_SOCKET_FAMILY_IPV6) {
    memcpy (key->address, bytes, 16);
    return;
  }
  key->address[10] = key->address[11] = 0xff;
  memcpy (key->address + 12, bytes, 4);
}

/* ServerSend to a peer and ServerSendTo share the kernel's bound. */
static gboolean
check_datagram_size (gsize    len,
                     GError **error)
{
  if (len <= SB_UDP_MAX_DATAGRAM)
    return TRUE;
  g_set_error (error, SB_ERROR, SB_ERROR_LIMIT_EXCEEDED,
               "a UDP datagram holds at most %d bytes, not %" G_GSIZE_FORMAT,
               SB_UDP_MAX_DATAGRAM, len);
  return FALSE;
}

/* ---- peer -------------------------------------------------------------- */

static gboolean
sb_udp_peer_send (SbClient  *client,
                  GBytes    *data,
                  GError   **error)
{
  SbUdpPeer *self = SB_UDP_PEER (client);
  gsize len = g_bytes_get_size (data);
  SbOutDatagram *datagram;

  if (self->gone) {
    g_set_error (error, SB_ERROR, SB_ERROR_NOT_FOUND,
                 "UDP peer %u is closed", sb_client_get_handle (client));
    return FALSE;
  }
  if (!check_datagram_size (len, error))
    return FALSE;
  if (len > SB_SEND_QUEUE_MAX - self->queued) {
    g_set_error (error, SB_ERROR, SB_ERROR_LIMIT_EXCEEDED,
                 "cannot queue %" G_GSIZE_FORMAT " bytes for UDP peer %u: %" G_GSIZE_FORMAT
                 " bytes are still queued and the limit is %d",
                 len, sb_client_get_handle (client), self->queued, SB_SEND_QUEUE_MAX);
    return FALSE;
  }

  datagram = g_new (SbOutDatagram, 1);
  datagram->peer = g_object_ref (self);
  datagram->to = g_object_ref (self->remote);
  datagram->data = g_bytes_ref (data);
  datagram->queued = &self->queued;
  self->queued += len;
  g_queue_push_tail (&self->server->out, datagram);
  if (self->server->write_source == NULL)
    flush_out (self->server);
  return TRUE;
}

/* Datagrams already queued still go out: they carry their address. */
static void
sb_udp_peer_close (SbClient *client)
{
  SbUdpPeer *self = SB_UDP_PEER (client);

  if (!self->gone)
    forget_peer (self->server, self);
}

static void
sb_udp_peer_finalize (GObject *object)
{
  g_clear_object (&SB_UDP_PEER (object)->remote);
  G_OBJECT_CLASS (sb_udp_peer_parent_class)->finalize (object);
}

static void
sb_udp_peer_class_init (SbUdpPeerClass *klass)
{
  SbClientClass *client_class = SB_CLIENT_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = sb_udp_peer_finalize;
  client_class->send = sb_udp_peer_send;
  client_class->close = sb_udp_peer_close;
  client_class->disconnect = sb_udp_peer_close;
}

static void
sb_udp_peer_init (SbUdpPeer *self)
{
  self->lru_link.data = self;
}

/* ---- sending ----------------------------------------------------------- */

static void
out_datagram_free (SbOutDatagram *datagram)
{
  *datagram->queued -= g_bytes_get_size (datagram->data);
  g_clear_object (&datagram->peer);
  g_object_unref (datagram->to);
  g_bytes_unref (datagram->data);
  g_free (datagram);
}

static gboolean
on_writable (GSocket      *socket,
             GIOCondition  condition,
             gpointer      user_data)
{
  flush_out (user_data);
  return G_SOURCE_CONTINUE;
}

/* UDP is unreliable by nature: a datagram the kernel refuses for any reason
 * but a full buffer is dropped, as the network could have. */
static void
flush_out (SbUdpServer *self)
{
  SbOutDatagram *datagram;

  while ((datagram = g_queue_peek_head (&self->out)) != NULL) {
    g_autoptr(GError) error = NULL;
    gsize len;
    const char *data = g_bytes_get_data (datagram->data, &len);

    g_socket_send_to (self->socket, datagram->to, data, len, NULL, &error);
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
      if (self->write_source == NULL) {
        self->write_source = g_socket_create_source (self->socket, G_IO_OUT, NULL);
        g_source_set_callback (self->write_source, G_SOURCE_FUNC (on_writable), self, NULL);
        g_source_attach (self->write_source, NULL);
      }
      return;
    }
    if (error != NULL)
      g_debug ("port %u/udp: dropping a datagram: %s",
               sb_server_get_port (SB_SERVER (self)), error->message);
    out_datagram_free (g_queue_pop_head (&self->out));
  }
  sb_clear_source (&self->write_source);
}

/* ---- peer lifetime ------------------------------------------------------ */

static gint64
peer_expiry (SbUdpServer *self,
             SbUdpPeer   *peer)
{
  return peer->last_heard + (gint64) sb_server_get_config (SB_SERVER (self))->udp_peer_timeout_ms * 1000;
}

static void
forget_peer (SbUdpServer *self,
             SbUdpPeer   *peer)
{
  peer->gone = TRUE;
  g_hash_table_remove (self->peers, &peer->key);
  g_queue_unlink (&self->lru, &peer->lru_link);
  sb_server_client_offline (SB_SERVER (self), SB_CLIENT (peer));
}

/* The timer is re-armed only when it fires, never per datagram: setting a
 * source's ready time wakes the main loop. It exists only while there are
 * peers, so an idle server costs the main loop nothing. */
static gboolean
on_expiry (gpointer user_data)
{
  SbUdpServer *self = user_data;
  gint64 now = g_get_monotonic_time ();
  SbUdpPeer *head;

  while ((head = g_queue_peek_head (&self->lru)) != NULL && peer_expiry (self, head) <= now)
    forget_peer (self, head);
  if (head != NULL)
    g_source_set_ready_time (self->expiry_source, peer_expiry (self, head));
  else
    sb_clear_source (&self->expiry_source);
  return G_SOURCE_CONTINUE;
}

static void
arm_expiry (SbUdpServer *self,
            SbUdpPeer   *peer)
{
  if (sb_server_get_config (SB_SERVER (self))->udp_peer_timeout_ms == 0)
    return;
  if (self->expiry_source == NULL)
    self->expiry_source = sb_deadline_source_new (peer_expiry (self, peer), on_expiry, self, NULL);
}

static void
touch_peer (SbUdpServer *self,
            SbUdpPeer   *peer)
{
  peer->last_heard = g_get_monotonic_time ();
  g_queue_unlink (&self->lru, &peer->lru_link);
  g_queue_push_tail_link (&self->lru, &peer->lru_link);
  arm_expiry (self, peer);
}

/* A full peer table makes room by dropping the peer heard from longest
 * ago: a flood of new sources cannot grow memory, and cannot lock out a
 * device that keeps talking. */
static void
evict_oldest (SbUdpServer *self)
{
  sb_statistics_count (&sb_statistics.udp_peers_evicted,
                       "port %u/udp: idlest peer evicted at a connection limit "
                       "(max-connections %u, or the daemon-wide cap)",
                       sb_server_get_port (SB_SERVER (self)),
                       sb_server_get_config (SB_SERVER (self))->max_connections);
  forget_peer (self, g_queue_peek_head (&self->lru));
}

static SbUdpPeer *
lookup_or_add_peer (SbUdpServer    *self,
                    GSocketAddress *address)
{
  SbPeerKey key;
  SbUdpPeer *peer;

  peer_key_init (&key, address);
  peer = g_hash_table_lookup (self->peers, &key);
  if (peer != NULL)
    return peer;

  if (sb_server_is_full (SB_SERVER (self)) && !g_queue_is_empty (&self->lru))
    evict_oldest (self);
  /* Still full: the daemon-wide cap, reached by other servers. */
  if (sb_server_is_full (SB_SERVER (self)))
    return NULL;
  peer = g_object_new (SB_TYPE_UDP_PEER, NULL);
  peer->server = self;
  peer->key = key;
  peer->remote = g_object_ref (address);
  sb_client_setup (SB_CLIENT (peer), SB_SERVER (self), address);
  g_hash_table_insert (self->peers, &peer->key, peer);
  g_queue_push_tail_link (&self->lru, &peer->lru_link);
  sb_server_client_online (SB_SERVER (self), SB_CLIENT (peer));
  g_object_unref (peer);   /* the server's client table holds it now */
  return peer;
}

/* ---- receiving ---------------------------------------------------------- */

static void
on_frame (const guint8 *data,
          gsize         len,
          gboolean      complete,
          gpointer      user_data)
{
  SbUdpServer *self = user_data;

  sb_server_client_frame (SB_SERVER (self), SB_CLIENT (self->current), data, len, complete);
}

static void
handle_datagram (SbUdpServer    *self,
                 GSocketAddress *address,
                 const guint8   *data,
                 gsize           len)
{
  SbUdpPeer *peer;

  /* Before anything else: a stranger's datagram makes no peer, and is
   * counted as denied even while the bus is congested. */
  if (!sb_server_admits (SB_SERVER (self), address))
    return;
  /* A paused server would make the kernel drop datagrams unseen; dropping
   * them here counts them. */
  if (sb_server_get_paused (SB_SERVER (self))) {
    sb_statistics_count (&sb_statistics.udp_datagrams_dropped,
                         "port %u/udp: datagram dropped while the bus is congested",
                         sb_server_get_port (SB_SERVER (self)));
    return;
  }
  peer = lookup_or_add_peer (self, address);
  if (peer == NULL) {
    sb_statistics_count (&sb_statistics.connections_refused,
                         "port %u/udp: new peer refused at the daemon-wide cap",
                         sb_server_get_port (SB_SERVER (self)));
    return;
  }
  touch_peer (self, peer);
  self->current = peer;
  sb_framer_feed (self->framer, data, len);
  sb_framer_end_datagram (self->framer);
  self->current = NULL;
}

/* Shared by every UDP server; allocated with the first one. */
static guint8 *sb_udp_buffers;

static gboolean
on_readable (GSocket      *socket,
             GIOCondition  condition,
             gpointer      user_data)
{
  g_autoptr(SbUdpServer) self = g_object_ref (user_data);
  GInputVector vectors[SB_UDP_BATCH];
  GInputMessage messages[SB_UDP_BATCH];
  GSocketAddress *addresses[SB_UDP_BATCH] = { NULL, };
  g_autoptr(GError) error = NULL;
  gint n;

  for (gsize i = 0; i < SB_UDP_BATCH; i++) {
    vectors[i] = (GInputVector) { sb_udp_buffers + i * 65536, 65536 };
    messages[i] = (GInputMessage) { .address = &addresses[i], .vectors = &vectors[i], .num_vectors = 1 };
  }
  n = g_socket_receive_messages (socket, messages, SB_UDP_BATCH, 0, NULL, &error);
  if (n < 0 && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    g_debug ("port %u/udp: %s", sb_server_get_port (SB_SERVER (self)), error->message);

  for (gint i = 0; i < n; i++) {
    if (addresses[i] != NULL && self->socket != NULL)
      handle_datagram (self, addresses[i], vectors[i].buffer, messages[i].bytes_received);
    g_clear_object (&addresses[i]);
  }
  return G_SOURCE_CONTINUE;
}

static void
start_reading (SbUdpServer *self)
{
  if (self->read_source != NULL)
    return;
  self->read_source = g_socket_create_source (self->socket, G_IO_IN, NULL);
  g_source_set_callback (self->read_source, G_SOURCE_FUNC (on_readable), self, NULL);
  g_source_attach (self->read_source, NULL);
}

/* ---- server ------------------------------------------------------------- */

static GSocket *
open_socket (const SbServerConfig  *config,
             GError               **error)
{
  g_autoptr(GInetAddress) ip = NULL;
  g_autoptr(GSocketAddress) address = NULL;
  g_autoptr(GSocket) socket = NULL;

  if (config->bind_address != NULL)
    ip = g_inet_address_new_from_string (config->bind_address);
  else
    ip = g_inet_address_new_any (G_SOCKET_FAMILY_IPV6);
  socket = g_socket_new (g_inet_address_get_family (ip), G_SOCKET_TYPE_DATAGRAM,
                         G_SOCKET_PROTOCOL_UDP, NULL);
  if (socket == NULL && config->bind_address == NULL) {
    /* No IPv6 on this machine: all IPv4 interfaces then. */
    g_clear_object (&ip);
    ip = g_inet_address_new_any (G_SOCKET_FAMILY_IPV4);
    socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM,
                           G_SOCKET_PROTOCOL_UDP, error);
  } else if (socket == NULL) {
    socket = g_socket_new (g_inet_address_get_family (ip), G_SOCKET_TYPE_DATAGRAM,
                           G_SOCKET_PROTOCOL_UDP, error);
  }
  if (socket == NULL)
    return NULL;

  if (config->bind_address == NULL && g_inet_address_get_family (ip) == G_SOCKET_FAMILY_IPV6)
    g_socket_set_option (socket, IPPROTO_IPV6, IPV6_V6ONLY, 0, NULL);
  /* ServerSendTo() may send to a broadcast address, as DriverWorks
   * drivers do to find devices; the flag matters only for sending. */
  g_socket_set_broadcast (socket, TRUE);
  g_socket_set_blocking (socket, FALSE);
  address = g_inet_socket_address_new (ip, config->port);
  /* No address reuse: for UDP it would let two sockets share the port. */
  if (!g_socket_bind (socket, address, FALSE, error))
    return NULL;
  return g_steal_pointer (&socket);
}

/* FALSE with errno set. */
static gboolean
set_multicast_interface (GSocket  *socket,
                         gboolean  ipv4,
                         gboolean  ipv6,
                         guint     index)
{
  int fd = g_socket_get_fd (socket);
  struct ip_mreqn request = { .imr_ifindex = (int) index };

  if (ipv4 && setsockopt (fd, IPPROTO_IP, IP_MULTICAST_IF, &request, sizeof request) != 0)
    return FALSE;
  if (ipv6 && setsockopt (fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &index, sizeof index) != 0)
    return FALSE;
  return TRUE;
}

/* Joins the server's groups on its multicast-interface (or where the
 * kernel routes each group), and sends its datagrams to groups out of
 * that interface. A server that joined groups hears only its own: by
 * default Linux hands a socket the datagrams of every group any socket
 * of the host joined, on its port. */
static gboolean
set_up_multicast (SbUdpServer           *self,
                  const SbServerConfig  *config,
                  GError               **error)
{
  const char *name = config->multicast_interface;
  gboolean ipv6 = g_socket_get_family (self->socket) == G_SOCKET_FAMILY_IPV6;
  gboolean ipv4 = !ipv6 || config->bind_address == NULL;
  guint index = 0;
  int saved_errno;

  if (name != NULL) {
    index = if_nametoindex (name);
    if (index == 0) {
      g_set_error (error, SB_ERROR, SB_ERROR_FAILED, "no network interface named '%s'", name);
      return FALSE;
    }
    if (!set_multicast_interface (self->socket, ipv4, ipv6, index)) {
      saved_errno = errno;
      g_set_error (error, SB_ERROR, SB_ERROR_FAILED, "cannot send multicast out of %s: %s",
                   name, g_strerror (saved_errno));
      return FALSE;
    }
  }
  if (config->multicast_groups == NULL)
    return TRUE;
  if (ipv4)
    g_socket_set_option (self->socket, IPPROTO_IP, IP_MULTICAST_ALL, 0, NULL);
  if (ipv6)
    g_socket_set_option (self->socket, IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0, NULL);
  for (guint i = 0; config->multicast_groups[i] != NULL; i++) {
    g_autoptr(GInetAddress) group = g_inet_address_new_from_string (config->multicast_groups[i]);
    g_autoptr(GError) io_error = NULL;

    if (!g_socket_join_multicast_group (self->socket, group, FALSE, name, &io_error)) {
      g_set_error (error, SB_ERROR, SB_ERROR_FAILED, "cannot join multicast group %s%s%s: %s",
                   config->multicast_groups[i], name != NULL ? " on " : "",
                   name != NULL ? name : "", io_error->message);
      return FALSE;
    }
  }
  return TRUE;
}

static gboolean
sb_udp_server_start (SbServer  *server,
                     GError   **error)
{
  SbUdpServer *self = SB_UDP_SERVER (server);
  const SbServerConfig *config = sb_server_get_config (server);
  g_autoptr(GError) io_error = NULL;
  g_autoptr(GSocketAddress) local = NULL;
  gsize delimiter_len;
  const guint8 *delimiter = g_bytes_get_data (config->delimiter, &delimiter_len);

  self->socket = open_socket (config, &io_error);
  if (self->socket != NULL)
    local = g_socket_get_local_address (self->socket, &io_error);
  if (local == NULL) {
    g_clear_object (&self->socket);
    sb_server_set_error_from_io (error, server, io_error);
    return FALSE;
  }
  sb_server_set_bound_port (server, g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (local)));
  if (!set_up_multicast (self, config, error)) {
    g_socket_close (self->socket, NULL);
    g_clear_object (&self->socket);
    return FALSE;
  }
  if (sb_udp_buffers == NULL)
    sb_udp_buffers = g_malloc (SB_UDP_BATCH * 65536);
  /* A datagram is a frame boundary, so partial frames never wait. */
  self->framer = sb_framer_new (delimiter, delimiter_len, config->max_message_bytes, 0,
                                on_frame, self);
  start_reading (self);
  return TRUE;
}

static void
sb_udp_server_stop (SbServer *server)
{
  SbUdpServer *self = SB_UDP_SERVER (server);

  sb_clear_source (&self->read_source);
  sb_clear_source (&self->write_source);
  sb_clear_source (&self->expiry_source);
  g_queue_clear_full (&self->out, (GDestroyNotify) out_datagram_free);
  g_clear_pointer (&self->framer, sb_framer_free);
  if (self->socket != NULL)
    g_socket_close (self->socket, NULL);
  g_clear_object (&self->socket);
}

static void
sb_udp_server_finalize (GObject *object)
{
  SbUdpServer *self = SB_UDP_SERVER (object);

  sb_udp_server_stop (SB_SERVER (self));
  g_clear_pointer (&self->peers, g_hash_table_unref);
  G_OBJECT_CLASS (sb_udp_server_parent_class)->finalize (object);
}

static void
sb_udp_server_class_init (SbUdpServerClass *klass)
{
  SbServerClass *server_class = SB_SERVER_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = sb_udp_server_finalize;
  server_class->start = sb_udp_server_start;
  server_class->stop = sb_udp_server_stop;
}

static void
sb_udp_server_init (SbUdpServer *self)
{
  self->peers = g_hash_table_new (peer_key_hash, peer_key_equal);
  g_queue_init (&self->lru);
  g_queue_init (&self->out);
}

static char *
destination_to_string (GSocketAddress *to)
{
  GInetSocketAddress *inet = G_INET_SOCKET_ADDRESS (to);
  g_autofree char *address = sb_inet_address_to_string (g_inet_socket_address_get_address (inet));

  return g_strdup_printf ("%s port %u", address, g_inet_socket_address_get_port (inet));
}

static gboolean
check_send_to_room (SbUdpServer  *self,
                    gsize         len,
                    GError      **error)
{
  if (!check_datagram_size (len, error))
    return FALSE;
  if (len > SB_SEND_QUEUE_MAX - self->queued_to) {
    g_set_error (error, SB_ERROR, SB_ERROR_LIMIT_EXCEEDED,
                 "cannot queue %" G_GSIZE_FORMAT " bytes on port %u/udp: %" G_GSIZE_FORMAT
                 " bytes sent with ServerSendTo are still queued and the limit is %d",
                 len, sb_server_get_port (SB_SERVER (self)), self->queued_to, SB_SEND_QUEUE_MAX);
    return FALSE;
  }
  return TRUE;
}

/* Sent at once when nothing is queued before it, so that the caller hears
 * why the kernel refuses it (no route, no such interface); after queued
 * datagrams it waits its turn, and a refusal then is only logged, as for
 * ServerSend(). */
gboolean
sb_udp_server_send_to (SbUdpServer     *self,
                       GSocketAddress  *to,
                       GBytes          *data,
                       GError         **error)
{
  g_autoptr(GError) io_error = NULL;
  SbOutDatagram *datagram;
  gsize len;
  const char *bytes = g_bytes_get_data (data, &len);

  g_return_val_if_fail (SB_IS_UDP_SERVER (self), FALSE);
  g_return_val_if_fail (G_IS_INET_SOCKET_ADDRESS (to), FALSE);
  g_return_val_if_fail (self->socket != NULL, FALSE);

  if (!check_send_to_room (self, len, error))
    return FALSE;
  if (g_queue_is_empty (&self->out)) {
    if (g_socket_send_to (self->socket, to, bytes, len, NULL, &io_error) >= 0)
      return TRUE;
    if (!g_error_matches (io_error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
      g_autofree char *destination = destination_to_string (to);

      g_set_error (error, SB_ERROR, SB_ERROR_FAILED, "cannot send from port %u/udp to %s: %s",
                   sb_server_get_port (SB_SERVER (self)), destination, io_error->message);
      return FALSE;
    }
  }

  datagram = g_new0 (SbOutDatagram, 1);
  datagram->to = g_object_ref (to);
  datagram->data = g_bytes_ref (data);
  datagram->queued = &self->queued_to;
  self->queued_to += len;
  g_queue_push_tail (&self->out, datagram);
  if (self->write_source == NULL)
    flush_out (self);
  return TRUE;
}
