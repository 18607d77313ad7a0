/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "sb-client.h"
#include "sb-config.h"

G_BEGIN_DECLS

/* What a server reports to its owner (the daemon), in the order the
 * contract promises: online, data in byte order, offline. Plain function
 * pointers rather than GObject signals: client_data is the hot path. */
typedef struct
{
  void (*client_online)  (SbServer     *server,
                          SbClient     *client,
                          gpointer      user_data);
  void (*client_data)    (SbServer     *server,
                          SbClient     *client,
                          const guint8 *data,
                          gsize         len,
                          gpointer      user_data);
  void (*client_offline) (SbServer     *server,
                          SbClient     *client,
                          gpointer      user_data);
} SbServerEvents;

#define SB_TYPE_SERVER (sb_server_get_type ())
G_DECLARE_DERIVABLE_TYPE (SbServer, sb_server, SB, SERVER, GObject)

struct _SbServerClass
{
  GObjectClass parent_class;

  /* Binds and listens; the bound port is then in the config. */
  gboolean (*start) (SbServer  *self,
                     GError   **error);
  /* Releases the port; called after every client was disconnected. */
  void     (*stop)  (SbServer  *self);
};

SbServer             *sb_server_new             (const SbServerConfig *config,
                                                 const SbServerEvents *events,
                                                 gpointer              user_data);
gboolean              sb_server_start           (SbServer             *self,
                                                 GError              **error);
void                  sb_server_stop            (SbServer             *self);

const SbServerConfig *sb_server_get_config      (SbServer             *self);
guint16               sb_server_get_port        (SbServer             *self);
gboolean              sb_server_get_use_udp     (SbServer             *self);
const char           *sb_server_get_identifier  (SbServer             *self);
GVariant             *sb_server_get_identifier_variant (SbServer      *self);
guint                 sb_server_get_n_clients   (SbServer             *self);
const char           *sb_server_get_creator     (SbServer             *self);
void                  sb_server_set_creator     (SbServer             *self,
                                                 const char           *unique_name);
/* A cap on clients across every server, so descriptors never run out. */
void                  sb_server_set_total_limit (guint                 limit);
void                  sb_server_set_paused      (SbServer             *self,
                                                 gboolean              paused);
gboolean              sb_server_get_paused      (SbServer             *self);

/* For subclasses. */
void                  sb_server_set_bound_port  (SbServer             *self,
                                                 guint16               port);
gboolean              sb_server_is_full         (SbServer             *self);
void                  sb_server_client_online   (SbServer             *self,
                                                 SbClient             *client);
void                  sb_server_client_data     (SbServer             *self,
                                                 SbClient             *client,
                                                 const guint8         *data,
                                                 gsize                 len);
void                  sb_server_client_offline  (SbServer             *self,
                                                 SbClient             *client);
void                  sb_server_set_error_from_io (GError            **error,
                                                   SbServer           *self,
                                                   GError             *io_error);
/* A frame of the framer (see SbFrameFunc): passed on to
 * sb_server_client_data(), without its delimiter when the server strips
 * it. */
void                  sb_server_client_frame    (SbServer             *self,
                                                 SbClient             *client,
                                                 const guint8         *data,
                                                 gsize                 len,
                                                 gboolean              complete);
/* TRUE when the server's allow-from admits @remote. Otherwise counts it
 * as denied (connections-denied for TCP, udp-datagrams-denied for UDP)
 * and logs it, at most once a minute per server. */
gboolean              sb_server_admits          (SbServer             *self,
                                                 GSocketAddress       *remote);
/* A connection that is not a client yet (a TLS handshake) holds a place:
 * sb_server_is_full() counts it, for the server and daemon-wide. */
void                  sb_server_hold_place      (SbServer             *self);
void                  sb_server_release_place   (SbServer             *self);

G_END_DECLS
