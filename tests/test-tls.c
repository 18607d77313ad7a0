/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include <string.h>
#include <sys/stat.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "sb-config.h"
#include "sb-error.h"
#include "sb-state.h"
#include "sb-tls-config.h"
#include "sb-tls-credentials.h"

#define PEM_CERT "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
#define PEM_KEY "-----BEGIN PRIVATE KEY-----\nsecret-key-body\n-----END PRIVATE KEY-----\n"

static SbServerConfig *
new_with_options (const char  *text,
                  gboolean     use_udp,
                  GError     **error)
{
  g_autoptr(GError) parse_error = NULL;
  g_autoptr(GVariant) options = g_variant_parse (G_VARIANT_TYPE_VARDICT, text, NULL, NULL,
                                                 &parse_error);

  g_assert_no_error (parse_error);
  return sb_server_config_new_from_args (0, "", use_udp, "", options, error);
}

static void
test_defaults (void)
{
  g_autoptr(SbTlsConfig) tls = sb_tls_config_new ();
  g_autoptr(SbServerConfig) plain = sb_server_config_new ();

  g_assert_null (plain->tls);
  for (SbTlsText i = 0; i < SB_TLS_N_TEXTS; i++)
    g_assert_null (sb_tls_config_get_text (tls, i));
  g_assert_cmpint (tls->client_auth, ==, SB_TLS_CLIENT_AUTH_REQUEST);
  g_assert_cmpuint (tls->handshake_timeout_ms, ==, 10000);
  g_assert_cmpuint (sb_tls_config_inline_size (tls), ==, 0);
  g_assert_cmpuint (sb_tls_config_inline_size (NULL), ==, 0);
}

static void
test_options (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SbServerConfig) config = NULL;
  g_autoptr(SbServerConfig) copy = NULL;
  const SbTlsConfig *tls;

  config = new_with_options ("{'tls-certificate': <'/etc/sockbridge/cert.pem'>,"
                             " 'tls-private-key': <'" PEM_KEY "'>,"
                             " 'tls-password': <''>, 'tls-chain': <'/etc/chain.pem'>,"
                             " 'tls-client-ca': <'/etc/ca.pem'>,"
                             " 'tls-client-auth': <'require'>,"
                             " 'tls-handshake-timeout-ms': <uint32 2500>}", FALSE, &error);
  g_assert_no_error (error);
  tls = config->tls;
  g_assert_nonnull (tls);
  g_assert_cmpstr (sb_tls_config_get_text (tls, SB_TLS_CERTIFICATE), ==, "/etc/sockbridge/cert.pem");
  g_assert_cmpstr (sb_tls_config_get_text (tls, SB_TLS_PRIVATE_KEY), ==, PEM_KEY);
  g_assert_null (sb_tls_config_get_text (tls, SB_TLS_PASSWORD));  /* "" is none */
  g_assert_cmpstr (sb_tls_config_get_text (tls, SB_TLS_CHAIN), ==, "/etc/chain.pem");
  g_assert_cmpstr (sb_tls_config_get_text (tls, SB_TLS_CLIENT_CA), ==, "/etc/ca.pem");
  g_assert_cmpint (tls->client_auth, ==, SB_TLS_CLIENT_AUTH_REQUIRE);
  g_assert_cmpuint (tls->handshake_timeout_ms, ==, 2500);
  g_assert_false (tls->argument_names);
  g_assert_cmpuint (sb_tls_config_inline_size (tls), ==, strlen (PEM_KEY));

  copy = sb_server_config_copy (config);
  g_assert_true (copy->tls != config->tls);
  g_assert_true (sb_tls_config_get_text (copy->tls, SB_TLS_CERTIFICATE) !=
                 sb_tls_config_get_text (tls, SB_TLS_CERTIFICATE));
  g_assert_true (sb_server_config_same_settings (config, copy));
  copy->tls->client_auth = SB_TLS_CLIENT_AUTH_REQUEST;
  g_assert_false (sb_server_config_same_settings (config, copy));
  copy->tls->client_auth = SB_TLS_CLIENT_AUTH_REQUIRE;
  sb_tls_config_set_text (copy->tls, SB_TLS_CHAIN, NULL);
  g_assert_false (sb_server_config_same_settings (config, copy));
  /* TLS or not is a setting too. */
  g_clear_pointer (&copy->tls, sb_tls_config_free);
  g_assert_false (sb_server_config_same_settings (config, copy));
  g_assert_false (sb_server_config_same_settings (copy, config));
}

static void
test_invalid_options (void)
{
  static const struct {
    const char *options;
    gboolean    use_udp;
    const char *message;
  } cases[] = {
    { "{'tls-client-auth': <'none'>}", FALSE,
      "a TLS server needs tls-certificate: PEM text, or the absolute path of a PEM or PKCS#12 file" },
    { "{'tls-certificate': <''>}", FALSE, "a TLS server needs tls-certificate" },
    { "{'tls-certificate': <'/c.pem'>}", TRUE,
      "TLS needs a TCP server (use_udp false); sockbridged has no DTLS" },
    { "{'tls-certificate': <'/c.pem'>, 'tls-client-auth': <'maybe'>}", FALSE,
      "option 'tls-client-auth' must be \"none\", \"request\" or \"require\", not \"maybe\"" },
    { "{'tls-certificate': <'/c.pem'>, 'tls-handshake-timeout-ms': <uint32 0>}", FALSE,
      "option 'tls-handshake-timeout-ms' must be from 1 to 600000, not 0" },
    { "{'tls-certificate': <'/c.pem'>, 'tls-handshake-timeout-ms': <uint32 600001>}", FALSE,
      "option 'tls-handshake-timeout-ms' must be from 1 to 600000, not 600001" },
    { "{'tls-certificate': <'/c.pem'>, 'tls-client-auth': <'none'>, 'tls-client-ca': <'/ca.pem'>}",
      FALSE, "tls-client-ca verifies client certificates, but none are asked for" },
    { "{'tls-certificate': <'cert.pem'>}", FALSE,
      "tls-certificate must be PEM text (\"-----BEGIN ...\") or the absolute path of a file" },
    { "{'tls-certificate': <'/c.pem'>, 'tls-private-key': <'c2VjcmV0LWtleS1ib2R5'>}", FALSE,
      "tls-private-key must be PEM text" },
    { "{'tls-certificate': <@ay []>}", FALSE,
      "option 'tls-certificate' must be of type 's', not 'ay'" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(SbServerConfig) config = new_with_options (cases[i].options, cases[i].use_udp, &error);

    g_test_message ("%s", cases[i].options);
    g_assert_null (config);
    g_assert_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (error->message, cases[i].message));
    /* Neither a secret nor what may be one is ever quoted. */
    g_assert_null (strstr (error->message, "c2VjcmV0"));
  }
}

static void
test_inline_limit (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SbTlsConfig) tls = sb_tls_config_new ();
  g_autoptr(GString) pem = g_string_new ("-----BEGIN CERTIFICATE-----\n");

  while (pem->len <= SB_TLS_MAX_INLINE_BYTES)
    g_string_append (pem, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
  sb_tls_config_set_text (tls, SB_TLS_CERTIFICATE, pem->str);
  g_assert_false (sb_tls_config_check (tls, FALSE, &error));
  g_assert_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "inline PEM is limited to 16384 bytes"));
}

static void
test_arguments (void)
{
  static const struct {
    guint32         mode;
    SbTlsClientAuth auth;
  } modes[] = {
    { 0, SB_TLS_CLIENT_AUTH_REQUEST },
    { 0x01, SB_TLS_CLIENT_AUTH_NONE },
    { 0x02, SB_TLS_CLIENT_AUTH_REQUEST },
    { 0x04, SB_TLS_CLIENT_AUTH_REQUIRE },
    { 0x06, SB_TLS_CLIENT_AUTH_REQUIRE },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (modes); i++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(SbTlsConfig) tls = NULL;

    tls = sb_tls_config_new_from_arguments (0, modes[i].mode, "", "/c.pem", "", "", "", &error);
    g_assert_no_error (error);
    g_assert_cmpint (tls->client_auth, ==, modes[i].auth);
    g_assert_true (tls->argument_names);
    g_assert_null (sb_tls_config_get_text (tls, SB_TLS_PRIVATE_KEY));
    g_assert_true (sb_tls_config_check (tls, FALSE, &error));
    g_assert_no_error (error);
  }
}

static void
test_invalid_arguments (void)
{
  static const struct {
    guint32     options;
    guint32     mode;
    const char *ciphers;
    const char *certificate;
    const char *message;
  } cases[] = {
    { 0x02000000, 0, "", "/c.pem", "options 0x2000000: GIO sets no TLS options per server" },
    { 0, 0, "HIGH:!aNULL", "/c.pem",
      "cipher_list \"HIGH:!aNULL\": GIO cannot choose cipher suites per server" },
    { 0, 0x08, "", "/c.pem", "verify_mode 0x8 has unknown bits 0x8" },
    { 0, 0x03, "", "/c.pem", "verify_mode 0x3: 0x01 (none) contradicts" },
    { 0, 0x05, "", "/c.pem", "verify_mode 0x5: 0x01 (none) contradicts" },
    { 0, 0, "", "", "a TLS server needs certificate: PEM text" },
    { 0, 0, "", "c.pem", "certificate must be PEM text" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(SbTlsConfig) tls = NULL;

    g_test_message ("case %" G_GSIZE_FORMAT, i);
    tls = sb_tls_config_new_from_arguments (cases[i].options, cases[i].mode, cases[i].ciphers,
                                            cases[i].certificate, "", "", "", &error);
    if (tls != NULL)
      sb_tls_config_check (tls, FALSE, &error);
    g_assert_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (error->message, cases[i].message));
  }
}

static void
test_client_auth_names (void)
{
  SbTlsClientAuth auth;

  for (SbTlsClientAuth a = SB_TLS_CLIENT_AUTH_NONE; a <= SB_TLS_CLIENT_AUTH_REQUIRE; a++) {
    g_assert_true (sb_tls_client_auth_from_string (sb_tls_client_auth_to_string (a), &auth));
    g_assert_cmpint (auth, ==, a);
  }
  g_assert_false (sb_tls_client_auth_from_string ("REQUIRE", &auth));
  g_assert_false (sb_tls_client_auth_from_string (NULL, &auth));
}

/* ---- the state file ------------------------------------------------------ */

static GPtrArray *
parse_state (const char  *server,
             GError     **error)
{
  g_autofree char *text = g_strdup_printf ("{\"version\": 1, \"servers\": [%s]}", server);

  return sb_state_parse (text, strlen (text), error);
}

#define SERVER_START "{\"port\": 5000, \"udp\": false, \"identifier\": \"x\", \"delimiter\": \"\", "
#define SERVER_END ", \"flush-timeout-ms\": 1, \"max-message-bytes\": 2, \"max-connections\": 3, " \
                   "\"udp-peer-timeout-ms\": 4, \"owner-uid\": 0}"

static void
test_state_round_trip (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) configs = g_ptr_array_new_with_free_func ((GDestroyNotify) sb_server_config_free);
  g_autoptr(GPtrArray) parsed = NULL;
  g_autofree char *text = NULL;
  SbServerConfig *tls_server, *plain;

  tls_server = new_with_options ("{'tls-certificate': <'" PEM_CERT PEM_KEY "'>,"
                                 " 'tls-password': <'pw'>, 'tls-client-auth': <'none'>,"
                                 " 'tls-handshake-timeout-ms': <uint32 700>}", FALSE, &error);
  g_assert_no_error (error);
  tls_server->port = 5001;
  plain = sb_server_config_new ();
  plain->port = 5002;
  g_ptr_array_add (configs, tls_server);
  g_ptr_array_add (configs, plain);

  text = sb_state_serialize (configs, NULL);
  /* Written as given, the inline key too: the file is 0600. */
  g_assert_nonnull (strstr (text, "\"tls\" : {"));
  g_assert_nonnull (strstr (text, "secret-key-body"));
  g_assert_nonnull (strstr (text, "\"client-auth\" : \"none\""));
  g_assert_null (strstr (text, "\"private-key\""));
  parsed = sb_state_parse (text, strlen (text), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (parsed->len, ==, 2);
  g_assert_true (sb_server_config_same_settings (g_ptr_array_index (parsed, 0), tls_server));
  g_assert_true (sb_server_config_same_settings (g_ptr_array_index (parsed, 1), plain));
  g_assert_null (((SbServerConfig *) g_ptr_array_index (parsed, 1))->tls);
}

static void
test_state_documented_tls (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) configs = NULL;
  const SbTlsConfig *tls;

  configs = parse_state (SERVER_START "\"tls\": {\"certificate\": \"/etc/sockbridge/cert.pem\","
                         " \"private-key\": \"/etc/sockbridge/key.pem\","
                         " \"chain\": \"/etc/sockbridge/chain.pem\","
                         " \"client-ca\": \"/etc/sockbridge/ca.pem\","
                         " \"client-auth\": \"require\", \"handshake-timeout-ms\": 10000}"
                         SERVER_END, &error);
  g_assert_no_error (error);
  tls = ((SbServerConfig *) g_ptr_array_index (configs, 0))->tls;
  g_assert_cmpstr (sb_tls_config_get_text (tls, SB_TLS_CERTIFICATE), ==, "/etc/sockbridge/cert.pem");
  g_assert_cmpstr (sb_tls_config_get_text (tls, SB_TLS_PRIVATE_KEY), ==, "/etc/sockbridge/key.pem");
  g_assert_null (sb_tls_config_get_text (tls, SB_TLS_PASSWORD));
  g_assert_cmpstr (sb_tls_config_get_text (tls, SB_TLS_CHAIN), ==, "/etc/sockbridge/chain.pem");
  g_assert_cmpstr (sb_tls_config_get_text (tls, SB_TLS_CLIENT_CA), ==, "/etc/sockbridge/ca.pem");
  g_assert_cmpint (tls->client_auth, ==, SB_TLS_CLIENT_AUTH_REQUIRE);
  g_assert_cmpuint (tls->handshake_timeout_ms, ==, 10000);
}

static void
test_state_invalid_tls (void)
{
  static const struct {
    const char *tls;
    const char *message;
  } cases[] = {
    { "\"tls\": 1", "server 1: 'tls' must be an object" },
    { "\"tls\": {\"certificate\": \"/c\", \"client-auth\": \"none\", \"handshake-timeout-ms\": 1,"
      " \"key\": \"/k\"}", "server 1: unknown member 'key'" },
    { "\"tls\": {\"client-auth\": \"none\", \"handshake-timeout-ms\": 1}",
      "server 1: 'tls': a TLS server needs tls-certificate" },
    { "\"tls\": {\"certificate\": 5, \"client-auth\": \"none\", \"handshake-timeout-ms\": 1}",
      "server 1: 'certificate' must be a string" },
    { "\"tls\": {\"certificate\": \"/c\", \"handshake-timeout-ms\": 1}",
      "server 1: 'client-auth' is missing" },
    { "\"tls\": {\"certificate\": \"/c\", \"client-auth\": \"all\", \"handshake-timeout-ms\": 1}",
      "server 1: 'client-auth' must be \"none\", \"request\" or \"require\"" },
    { "\"tls\": {\"certificate\": \"/c\", \"client-auth\": \"none\", \"handshake-timeout-ms\": 0}",
      "server 1: 'handshake-timeout-ms' must be an integer from 1 to 600000" },
    { "\"tls\": {\"certificate\": \"c\", \"client-auth\": \"none\", \"handshake-timeout-ms\": 1}",
      "server 1: 'tls': tls-certificate must be PEM text" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr(GError) error = NULL;
    g_autofree char *server = g_strconcat (SERVER_START, cases[i].tls, SERVER_END, NULL);
    g_autoptr(GPtrArray) configs = parse_state (server, &error);

    g_test_message ("%s", cases[i].tls);
    g_assert_null (configs);
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_assert_nonnull (strstr (error->message, cases[i].message));
  }
}

static void
test_state_tls_on_udp (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) configs = NULL;

  configs = parse_state ("{\"port\": 5000, \"udp\": true, \"identifier\": \"x\", \"delimiter\": \"\", "
                         "\"tls\": {\"certificate\": \"/c\", \"client-auth\": \"none\", "
                         "\"handshake-timeout-ms\": 1}" SERVER_END, &error);
  g_assert_null (configs);
  g_assert_nonnull (strstr (error->message, "TLS needs a TCP server"));
}

/* ---- files ------------------------------------------------------------------ */

static SbTlsConfig *
config_with_certificate (const char *certificate)
{
  SbTlsConfig *tls = sb_tls_config_new ();

  sb_tls_config_set_text (tls, SB_TLS_CERTIFICATE, certificate);
  return tls;
}

static void
assert_load_fails (const SbTlsConfig *tls,
                   gint               code,
                   const char        *message)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) certificate = sb_tls_load_certificate (tls, &error);

  g_assert_null (certificate);
  g_assert_error (error, SB_ERROR, code);
  if (strstr (error->message, message) == NULL)
    g_error ("\"%s\" is not in \"%s\"", message, error->message);
  g_assert_null (strstr (error->message, "secret-key-body"));
}

static void
test_unusable_files (void)
{
  g_autofree char *dir = g_dir_make_tmp ("sb-test-tls-XXXXXX", NULL);
  g_autofree char *missing = g_build_filename (dir, "missing.pem", NULL);
  g_autofree char *fifo = g_build_filename (dir, "fifo.pem", NULL);
  g_autofree char *big = g_build_filename (dir, "big.pem", NULL);
  g_autofree char *key = g_build_filename (dir, "key.pem", NULL);
  g_autofree char *message = NULL;
  g_autofree char *filler = g_malloc0 (SB_TLS_MAX_FILE_BYTES + 2);
  g_autoptr(SbTlsConfig) tls = NULL;

  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  memset (filler, 'A', SB_TLS_MAX_FILE_BYTES + 1);
  g_assert_true (g_file_set_contents (big, filler, -1, NULL));
  g_assert_true (g_file_set_contents (key, PEM_KEY, -1, NULL));

  message = g_strdup_printf ("tls-certificate %s: no such file", missing);
  assert_load_fails (tls = config_with_certificate (missing), SB_ERROR_INVALID_ARGUMENT, message);
  g_clear_pointer (&tls, sb_tls_config_free);
  g_clear_pointer (&message, g_free);
  message = g_strdup_printf ("tls-certificate %s: is a directory, not a file", dir);
  assert_load_fails (tls = config_with_certificate (dir), SB_ERROR_INVALID_ARGUMENT, message);
  g_clear_pointer (&tls, sb_tls_config_free);
  /* A FIFO would block a reader: it is refused unopened for reading. */
  assert_load_fails (tls = config_with_certificate (fifo), SB_ERROR_INVALID_ARGUMENT,
                     "fifo.pem: is not a regular file");
  g_clear_pointer (&tls, sb_tls_config_free);
  assert_load_fails (tls = config_with_certificate (big), SB_ERROR_INVALID_ARGUMENT,
                     "big.pem: is over 1048576 bytes");
  g_clear_pointer (&tls, sb_tls_config_free);
  /* A key where the certificate belongs: named, never quoted. */
  assert_load_fails (tls = config_with_certificate (key), SB_ERROR_INVALID_ARGUMENT,
                     "key.pem: holds no PEM certificate");
  g_clear_pointer (&tls, sb_tls_config_free);
  assert_load_fails (tls = config_with_certificate (PEM_KEY), SB_ERROR_INVALID_ARGUMENT,
                     "tls-certificate (inline PEM): holds no PEM certificate");

  g_unlink (missing);
  g_unlink (fifo);
  g_unlink (big);
  g_unlink (key);
  g_rmdir (dir);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/tls/config/defaults", test_defaults);
  g_test_add_func ("/tls/config/options", test_options);
  g_test_add_func ("/tls/config/invalid-options", test_invalid_options);
  g_test_add_func ("/tls/config/inline-limit", test_inline_limit);
  g_test_add_func ("/tls/config/arguments", test_arguments);
  g_test_add_func ("/tls/config/invalid-arguments", test_invalid_arguments);
  g_test_add_func ("/tls/config/client-auth-names", test_client_auth_names);
  g_test_add_func ("/tls/state/round-trip", test_state_round_trip);
  g_test_add_func ("/tls/state/documented", test_state_documented_tls);
  g_test_add_func ("/tls/state/invalid", test_state_invalid_tls);
  g_test_add_func ("/tls/state/udp", test_state_tls_on_udp);
  g_test_add_func ("/tls/files/unusable", test_unusable_files);

  return g_test_run ();
}
