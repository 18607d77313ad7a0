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
/* Linux joins at most 20 IPv4 groups per socket by default
 * (net.ipv4.igmp_max_memberships). */
#define SB_MAX_MULTICAST_GROUPS        20

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
  gboolean  strip_delimiter;    /* frames without their delimiter */
  GStrv     allow_from;         /* canonical entries; NULL = everyone */
  GStrv     multicast_groups;   /* canonical group addresses; NULL = none */
  char     *multicast_interface; /* NULL = the kernel's choice */
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

/* Every option @config runs with, defaults included, as the a{sv} that
 * CreateServerWithOptions() takes and GetServerOptions() returns
 * (floating). Given back to CreateServerWithOptions() with the same port,
 * delimiter, use_udp and identifier, it asks for the same server. */
GVariant       *sb_server_config_to_options    (const SbServerConfig *config);

/* Applies one CreateServerWithOptions() option to @config, checked as the
 * method checks it. The state file reads the options added after its first
 * format through here, so that it cannot hold what a caller could not ask
 * for. */
gboolean        sb_server_config_apply_option  (SbServerConfig       *config,
                                                const char           *key,
                                                GVariant             *value,
                                                GError              **error);

/* Checks the rules between options, which no single option can: what
 * sb_server_config_new_from_args() does once every option is applied.
 * Fails with SB_ERROR_INVALID_ARGUMENT. */
gboolean        sb_server_config_check         (const SbServerConfig *config,
                                                GError              **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SbServerConfig, sb_server_config_free)

G_END_DECLS
