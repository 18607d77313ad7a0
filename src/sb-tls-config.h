/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define SB_TLS_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define SB_TLS_MAX_HANDSHAKE_TIMEOUT_MS     600000
/* PEM text given inline (not as a path), per field: it goes into the
 * state file, which is read back only up to 4 MiB. */
#define SB_TLS_MAX_INLINE_BYTES             (16 * 1024)
/* ... and in all persistent servers together: the state file must stay
 * well under the 4 MiB it is read up to, with 1 024 servers. */
#define SB_TLS_MAX_INLINE_TOTAL             (1024 * 1024)

/* DriverWorks' verify_mode bits. */
#define SB_TLS_VERIFY_NONE                  0x01
#define SB_TLS_VERIFY_PEER                  0x02
#define SB_TLS_VERIFY_FAIL_IF_NO_PEER_CERT  0x04

typedef enum {
  SB_TLS_CLIENT_AUTH_NONE,
  SB_TLS_CLIENT_AUTH_REQUEST,
  SB_TLS_CLIENT_AUTH_REQUIRE,
} SbTlsClientAuth;

/* The text settings, in the order of SbTlsConfig's fields. */
typedef enum {
  SB_TLS_CERTIFICATE,
  SB_TLS_PRIVATE_KEY,
  SB_TLS_PASSWORD,
  SB_TLS_CHAIN,
  SB_TLS_CLIENT_CA,
  SB_TLS_N_TEXTS,
} SbTlsText;

/* The TLS settings of a TCP server, as given: file paths stay paths (the
 * files are read when the server starts), PEM text stays text. Texts are
 * NULL when not given (an empty string is not given). The password and
 * any inline key are secrets: they are wiped when freed, and no message
 * ever quotes a text that is not a path. */
typedef struct {
  char            *texts[SB_TLS_N_TEXTS];
  SbTlsClientAuth  client_auth;
  guint            handshake_timeout_ms;
  /* Messages name the texts as CreateTLSServer's arguments (certificate,
   * private_key, ...) rather than as options (tls-certificate, ...).
   * Not a setting: ignored by sb_tls_config_equal(). */
  gboolean         argument_names;
} SbTlsConfig;

SbTlsConfig *sb_tls_config_new        (void);
SbTlsConfig *sb_tls_config_copy       (const SbTlsConfig *self);
void         sb_tls_config_free       (SbTlsConfig       *self);
/* NULL-safe: two NULLs are equal. */
gboolean     sb_tls_config_equal      (const SbTlsConfig *a,
                                       const SbTlsConfig *b);

/* Takes @text (NULL or "" clears it); wipes the old one. */
void         sb_tls_config_set_text   (SbTlsConfig       *self,
                                       SbTlsText          which,
                                       const char        *text);
const char  *sb_tls_config_get_text   (const SbTlsConfig *self,
                                       SbTlsText          which);
/* The name of a text in messages: "tls-certificate" or "certificate". */
const char  *sb_tls_config_name       (const SbTlsConfig *self,
                                       SbTlsText          which);

/* Checks what can be checked without reading files: a certificate is
 * given, each text is PEM text or an absolute path, inline PEM is not too
 * long, tls-client-ca only with client certificates, TCP only. */
gboolean     sb_tls_config_check      (const SbTlsConfig *self,
                                       gboolean           use_udp,
                                       GError           **error);

/* CreateTLSServer's arguments after the delimiter, as DriverWorks has
 * them. @options and @cipher_list must be 0 and "": GIO sets neither per
 * server. Does not check the texts: sb_tls_config_check() does. */
SbTlsConfig *sb_tls_config_new_from_arguments (guint32      options,
                                               guint32      verify_mode,
                                               const char  *cipher_list,
                                               const char  *certificate,
                                               const char  *private_key,
                                               const char  *password,
                                               const char  *chain,
                                               GError     **error);

const char  *sb_tls_client_auth_to_string   (SbTlsClientAuth  auth);
gboolean     sb_tls_client_auth_from_string (const char      *text,
                                             SbTlsClientAuth *auth);

/* TRUE when @text is PEM text rather than a path. */
gboolean     sb_tls_is_pem            (const char        *text);

/* Bytes of inline PEM text in @self: what the state file holds beyond
 * paths. 0 for NULL. */
gsize        sb_tls_config_inline_size (const SbTlsConfig *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SbTlsConfig, sb_tls_config_free)

G_END_DECLS
