/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

#include "sb-tls-config.h"

G_BEGIN_DECLS

#define SB_DEFAULT_FLUSH_TIMEOUT_MS    1000
#define SB_DEFAULT_MAX_MESSAGE_BYTES   (1024 * 1024)
#define SB_MAX_MAX_MESSAGE_BYTES       (16 * 1024 * 1024)
#define SB_DEFAULT_MAX_CONNECTIONS     256
#define SB_MAX_MAX_CONNECTIONS         65536
#define SB_DEFAULT_UDP_PEER_TIMEOUT_MS 60000
#define SB_MAX_IDENTIFIER_BYTES        255
#define SB_MAX_DELIMITER_BYTES         64

/* The settings of one server: what CreateServer* asked for, plus who owns
 * it. Plain data, so the state file and the option parser can be tested
 * without sockets. */
typedef struct {
  guint16   port;               /* requested port; the bound one once bound */
  gboolean  use_udp;
  SbTlsConfig *tls;             /* NULL: plain TCP or UDP */
  char     *identifier;         /* never NULL */
  GBytes   *delimiter;          /* never NULL; empty = no delimiter */
  char     *bind_address;       /* NULL = all interfaces, IPv4 and IPv6 */
  guint     flush_timeout_ms;
  guint     max_message_bytes;
  guint     max_connections;
  guint     udp_peer_timeout_ms;
  gboolean  exit_with_caller;
  gboolean  batch;              /* data as ServerDataInBatch signals */
  guint32   owner_uid;
} SbServerConfig;

SbServerConfig *sb_server_config_new          (void);
SbServerConfig *sb_server_config_copy         (const SbServerConfig *self);
void            sb_server_config_free         (SbServerConfig       *self);

/* Builds a config from CreateServer / CreateServerWithOptions arguments.
 * @options is an a{sv} GVariant or NULL. Fails with SB_ERROR_INVALID_ARGUMENT
 * and a message naming the offending argument or option. */
SbServerConfig *sb_server_config_new_from_args (guint16      port,
                                                const char  *delimiter,
                                                gboolean     use_udp,
                                                const char  *identifier,
                                                GVariant    *options,
                                                GError     **error);

/* TRUE when every setting but port and owner_uid is the same. */
gboolean        sb_server_config_same_settings (const SbServerConfig *a,
                                                const SbServerConfig *b);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SbServerConfig, sb_server_config_free)

G_END_DECLS
