/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-tls-config.h"

#include <string.h>

#include "sb-error.h"

static const char * const sb_option_names[SB_TLS_N_TEXTS] = {
  "tls-certificate", "tls-private-key", "tls-password", "tls-chain", "tls-client-ca",
};

/* CreateTLSServer has no client CA argument: that one is always an option. */
static const char * const sb_argument_names[SB_TLS_N_TEXTS] = {
  "certificate", "private_key", "password", "chain", "tls-client-ca",
};

static const char * const sb_client_auth_names[] = { "none", "request", "require" };

SbTlsConfig *
sb_tls_config_new (void)
{
  SbTlsConfig *self = g_new0 (SbTlsConfig, 1);

  self->client_auth = SB_TLS_CLIENT_AUTH_REQUEST;
  self->handshake_timeout_ms = SB_TLS_DEFAULT_HANDSHAKE_TIMEOUT_MS;
  return self;
}

SbTlsConfig *
sb_tls_config_copy (const SbTlsConfig *self)
{
  SbTlsConfig *copy;

  if (self == NULL)
    return NULL;
  copy = g_memdup2 (self, sizeof *self);
  for (gsize i = 0; i < SB_TLS_N_TEXTS; i++)
    copy->texts[i] = g_strdup (self->texts[i]);
  return copy;
}

/* Keys and passwords do not linger in freed memory. */
static void
wipe (char **text)
{
  if (*text == NULL)
    return;
  explicit_bzero (*text, strlen (*text));
  g_clear_pointer (text, g_free);
}

void
sb_tls_config_free (SbTlsConfig *self)
{
  if (self == NULL)
    return;
  for (gsize i = 0; i < SB_TLS_N_TEXTS; i++)
    wipe (&self->texts[i]);
  g_free (self);
}

gboolean
sb_tls_config_equal (const SbTlsConfig *a,
                     const SbTlsConfig *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  for (gsize i = 0; i < SB_TLS_N_TEXTS; i++) {
    if (g_strcmp0 (a->texts[i], b->texts[i]) != 0)
      return FALSE;
  }
  return a->client_auth == b->client_auth &&
         a->handshake_timeout_ms == b->handshake_timeout_ms;
}

void
sb_tls_config_set_text (SbTlsConfig *self,
                        SbTlsText    which,
                        const char  *text)
{
  g_return_if_fail (which < SB_TLS_N_TEXTS);

  wipe (&self->texts[which]);
  if (text != NULL && *text != '\0')
    self->texts[which] = g_strdup (text);
}

const char *
sb_tls_config_get_text (const SbTlsConfig *self,
                        SbTlsText          which)
{
  g_return_val_if_fail (which < SB_TLS_N_TEXTS, NULL);

  return self->texts[which];
}

const char *
sb_tls_config_name (const SbTlsConfig *self,
                    SbTlsText          which)
{
  g_return_val_if_fail (which < SB_TLS_N_TEXTS, NULL);

  return self->argument_names ? sb_argument_names[which] : sb_option_names[which];
}

gboolean
sb_tls_is_pem (const char *text)
{
  return text != NULL && strstr (text, "-----BEGIN ") != NULL;
}

/* The password is neither: it is never a file. */
static gboolean
check_text (const SbTlsConfig  *self,
            SbTlsText           which,
            GError            **error)
{
  const char *text = self->texts[which];
  gsize len;

  if (text == NULL || which == SB_TLS_PASSWORD)
    return TRUE;
  len = strlen (text);
  if (sb_tls_is_pem (text) && len > SB_TLS_MAX_INLINE_BYTES) {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "%s is %" G_GSIZE_FORMAT " bytes of PEM text; inline PEM is limited to %d "
                 "bytes (it is kept in the state file): give the path of a file instead",
                 sb_tls_config_name (self, which), len, SB_TLS_MAX_INLINE_BYTES);
    return FALSE;
  }
  if (sb_tls_is_pem (text) || (text[0] == '/' && len <= 4096))
    return TRUE;
  /* Not quoted: what is neither PEM nor a path may be a secret put in
   * the wrong place. */
  g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
               "%s must be PEM text (\"-----BEGIN ...\") or the absolute path of a file",
               sb_tls_config_name (self, which));
  return FALSE;
}

gboolean
sb_tls_config_check (const SbTlsConfig  *self,
                     gboolean            use_udp,
                     GError            **error)
{
  g_return_val_if_fail (self != NULL, FALSE);

  if (use_udp) {
    g_set_error_literal (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                         "TLS needs a TCP server (use_udp false); sockbridged has no DTLS");
    return FALSE;
  }
  if (self->texts[SB_TLS_CERTIFICATE] == NULL) {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "a TLS server needs %s: PEM text, or the absolute path of a PEM or "
                 "PKCS#12 file", sb_tls_config_name (self, SB_TLS_CERTIFICATE));
    return FALSE;
  }
  if (self->texts[SB_TLS_CLIENT_CA] != NULL && self->client_auth == SB_TLS_CLIENT_AUTH_NONE) {
    g_set_error_literal (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                         "tls-client-ca verifies client certificates, but none are asked for: "
                         "set tls-client-auth to \"request\" or \"require\", or leave "
                         "tls-client-ca out");
    return FALSE;
  }
  for (SbTlsText i = 0; i < SB_TLS_N_TEXTS; i++) {
    if (!check_text (self, i, error))
      return FALSE;
  }
  return TRUE;
}

/* 0 is DriverWorks' default: request a certificate, as 0x02. */
static gboolean
client_auth_from_verify_mode (guint32           mode,
                              SbTlsClientAuth  *auth,
                              GError          **error)
{
  const guint32 known = SB_TLS_VERIFY_NONE | SB_TLS_VERIFY_PEER | SB_TLS_VERIFY_FAIL_IF_NO_PEER_CERT;

  if ((mode & ~known) != 0) {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "verify_mode 0x%x has unknown bits 0x%x; the known ones are 0x01 (none), "
                 "0x02 (peer: request a client certificate) and 0x04 (fail if the client "
                 "sends none: require one)", mode, mode & ~known);
    return FALSE;
  }
  if ((mode & SB_TLS_VERIFY_NONE) && mode != SB_TLS_VERIFY_NONE) {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "verify_mode 0x%x: 0x01 (none) contradicts 0x02 (peer) and 0x04 "
                 "(fail if no peer certificate)", mode);
    return FALSE;
  }
  if (mode & SB_TLS_VERIFY_FAIL_IF_NO_PEER_CERT)
    *auth = SB_TLS_CLIENT_AUTH_REQUIRE;
  else if (mode & SB_TLS_VERIFY_NONE)
    *auth = SB_TLS_CLIENT_AUTH_NONE;
  else
    *auth = SB_TLS_CLIENT_AUTH_REQUEST;
  return TRUE;
}

/* GIO has no per-connection control of protocol versions, options or
 * cipher suites: glib-networking takes GnuTLS's system-wide priorities
 * (or $G_TLS_GNUTLS_PRIORITY) for every connection of the process. What
 * cannot be honoured is refused, never ignored. */
static gboolean
check_unsupported (guint32      options,
                   const char  *cipher_list,
                   GError     **error)
{
  if (options != 0) {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "options 0x%x: GIO sets no TLS options per server, so sockbridged always "
                 "uses TLS 1.2 or newer with the system's defaults; pass 0", options);
    return FALSE;
  }
  if (*cipher_list != '\0') {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "cipher_list \"%.64s\": GIO cannot choose cipher suites per server, so "
                 "sockbridged uses the system's defaults (TLS 1.2 or newer); pass \"\" (the "
                 "daemon's whole cipher policy is GnuTLS's, see $G_TLS_GNUTLS_PRIORITY)",
                 cipher_list);
    return FALSE;
  }
  return TRUE;
}

SbTlsConfig *
sb_tls_config_new_from_arguments (guint32      options,
                                  guint32      verify_mode,
                                  const char  *cipher_list,
                                  const char  *certificate,
                                  const char  *private_key,
                                  const char  *password,
                                  const char  *chain,
                                  GError     **error)
{
  g_autoptr(SbTlsConfig) self = sb_tls_config_new ();

  g_return_val_if_fail (cipher_list != NULL, NULL);

  if (!check_unsupported (options, cipher_list, error) ||
      !client_auth_from_verify_mode (verify_mode, &self->client_auth, error))
    return NULL;
  self->argument_names = TRUE;
  sb_tls_config_set_text (self, SB_TLS_CERTIFICATE, certificate);
  sb_tls_config_set_text (self, SB_TLS_PRIVATE_KEY, private_key);
  sb_tls_config_set_text (self, SB_TLS_PASSWORD, password);
  sb_tls_config_set_text (self, SB_TLS_CHAIN, chain);
  return g_steal_pointer (&self);
}

const char *
sb_tls_client_auth_to_string (SbTlsClientAuth auth)
{
  g_return_val_if_fail (auth < G_N_ELEMENTS (sb_client_auth_names), NULL);

  return sb_client_auth_names[auth];
}

gboolean
sb_tls_client_auth_from_string (const char      *text,
                                SbTlsClientAuth *auth)
{
  for (gsize i = 0; i < G_N_ELEMENTS (sb_client_auth_names); i++) {
    if (g_strcmp0 (text, sb_client_auth_names[i]) == 0) {
      *auth = (SbTlsClientAuth) i;
      return TRUE;
    }
  }
  return FALSE;
}

gsize
sb_tls_config_inline_size (const SbTlsConfig *self)
{
  gsize size = 0;

  if (self == NULL)
    return 0;
  for (gsize i = 0; i < SB_TLS_N_TEXTS; i++) {
    if (self->texts[i] != NULL && (i == SB_TLS_PASSWORD || sb_tls_is_pem (self->texts[i])))
      size += strlen (self->texts[i]);
  }
  return size;
}
