/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include <string.h>

#include <glib.h>

#include "sb-allow.h"
#include "sb-config.h"
#include "sb-error.h"

#define ALL_OPTIONS \
  "allow-from, batch, bind-address, delimiter-bytes, exit-with-caller, flush-timeout-ms, " \
  "max-connections, max-message-bytes, multicast-groups, multicast-interface, strip-delimiter, " \
  "tls-certificate, tls-chain, tls-client-auth, tls-client-ca, tls-handshake-timeout-ms, " \
  "tls-password, tls-private-key, udp-peer-timeout-ms"

static GVariant *
parse_options (const char *text)
{
  g_autoptr(GError) error = NULL;
  GVariant *options = g_variant_parse (G_VARIANT_TYPE_VARDICT, text, NULL, NULL, &error);

  g_assert_no_error (error);
  return options;
}

static SbServerConfig *
new_with_options (const char  *text,
                  GError     **error)
{
  g_autoptr(GVariant) options = parse_options (text);

  return sb_server_config_new_from_args (0, "", FALSE, "", options, error);
}

static void
assert_delimiter (const SbServerConfig *config,
                  const void           *expected,
                  gsize                 expected_len)
{
  gsize len;
  const void *data = g_bytes_get_data (config->delimiter, &len);

  g_assert_cmpmem (data, len, expected, expected_len);
}

static void
assert_defaults (const SbServerConfig *config)
{
  g_assert_cmpstr (config->identifier, ==, "");
  assert_delimiter (config, NULL, 0);
  g_assert_null (config->bind_address);
  g_assert_false (config->use_udp);
  g_assert_cmpuint (config->flush_timeout_ms, ==, 1000);
  g_assert_cmpuint (config->max_message_bytes, ==, 1024 * 1024);
  g_assert_cmpuint (config->max_connections, ==, 256);
  g_assert_cmpuint (config->udp_peer_timeout_ms, ==, 60000);
  g_assert_false (config->exit_with_caller);
  g_assert_false (config->batch);
  g_assert_false (config->strip_delimiter);
  g_assert_null (config->allow_from);
  g_assert_null (config->multicast_groups);
  g_assert_null (config->multicast_interface);
  g_assert_cmpuint (config->owner_uid, ==, 0);
}

static void
test_defaults (void)
{
  g_autoptr(SbServerConfig) config = sb_server_config_new ();

  assert_defaults (config);
  g_assert_cmpuint (config->port, ==, 0);
}

static void
test_from_args (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SbServerConfig) plain = NULL;
  g_autoptr(SbServerConfig) with_empty = NULL;
  g_autoptr(GVariant) empty = parse_options ("@a{sv} {}");

  plain = sb_server_config_new_from_args (5000, "", FALSE, "", NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (plain->port, ==, 5000);
  assert_defaults (plain);

  with_empty = sb_server_config_new_from_args (6000, "\r\n", TRUE, "kitchen", empty, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (with_empty->port, ==, 6000);
  g_assert_true (with_empty->use_udp);
  g_assert_cmpstr (with_empty->identifier, ==, "kitchen");
  assert_delimiter (with_empty, "\r\n", 2);
  g_assert_null (with_empty->bind_address);
}

/* The delimiter is raw bytes: a backslash is a backslash. */
static void
test_delimiter_not_unescaped (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SbServerConfig) config = NULL;

  config = sb_server_config_new_from_args (1, "\\r\\n", FALSE, "", NULL, &error);
  g_assert_no_error (error);
  assert_delimiter (config, "\\r\\n", 4);
}

static void
test_every_option (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SbServerConfig) config = NULL;
  static const guint8 delimiter[] = { 0x00, 0xff, 0x03 };

  config = new_with_options ("{'bind-address': <'192.168.1.5'>,"
                             " 'delimiter-bytes': <[byte 0x00, 0xff, 0x03]>,"
                             " 'exit-with-caller': <true>,"
                             " 'flush-timeout-ms': <uint32 0>,"
                             " 'max-message-bytes': <uint32 4096>,"
                             " 'max-connections': <uint32 3>,"
                             " 'udp-peer-timeout-ms': <uint32 1234>,"
                             " 'batch': <true>,"
                             " 'strip-delimiter': <true>,"
                             " 'allow-from': <['10.0.0.0/8', '0:0::1']>}", &error);
  g_assert_no_error (error);
  g_assert_true (config->strip_delimiter);
  g_assert_cmpstrv (config->allow_from, ((const char * const[]) { "10.0.0.0/8", "::1", NULL }));
  g_assert_cmpstr (config->bind_address, ==, "192.168.1.5");
  assert_delimiter (config, delimiter, sizeof delimiter);
  g_assert_true (config->exit_with_caller);
  g_assert_cmpuint (config->flush_timeout_ms, ==, 0);
  g_assert_cmpuint (config->max_message_bytes, ==, 4096);
  g_assert_cmpuint (config->max_connections, ==, 3);
  g_assert_cmpuint (config->udp_peer_timeout_ms, ==, 1234);
  g_assert_true (config->batch);
}

static void
test_range_limits_accepted (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SbServerConfig) low = NULL;
  g_autoptr(SbServerConfig) high = NULL;

  low = new_with_options ("{'max-message-bytes': <uint32 1>, 'max-connections': <uint32 1>}",
                          &error);
  g_assert_no_error (error);
  g_assert_cmpuint (low->max_message_bytes, ==, 1);
  g_assert_cmpuint (low->max_connections, ==, 1);

  high = new_with_options ("{'max-message-bytes': <uint32 16777216>,"
                           " 'max-connections': <uint32 65536>,"
                           " 'flush-timeout-ms': <uint32 4294967295>,"
                           " 'udp-peer-timeout-ms': <uint32 4294967295>}", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (high->max_message_bytes, ==, 16777216);
  g_assert_cmpuint (high->max_connections, ==, 65536);
  g_assert_cmpuint (high->flush_timeout_ms, ==, G_MAXUINT32);
  g_assert_cmpuint (high->udp_peer_timeout_ms, ==, G_MAXUINT32);
}

static void
test_length_limits (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SbServerConfig) config = NULL;
  g_autofree char *identifier_255 = g_strnfill (255, 'i');
  g_autofree char *identifier_300 = g_strnfill (300, 'i');
  g_autofree char *delimiter_64 = g_strnfill (64, ';');
  g_autofree char *delimiter_65 = g_strnfill (65, ';');

  config = sb_server_config_new_from_args (1, delimiter_64, FALSE, identifier_255, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (config->identifier, ==, identifier_255);
  assert_delimiter (config, delimiter_64, 64);
  g_clear_pointer (&config, sb_server_config_free);

  config = sb_server_config_new_from_args (1, "", FALSE, identifier_300, NULL, &error);
  g_assert_null (config);
  g_assert_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT);
  g_assert_cmpstr (error->message, ==, "identifier is 300 bytes; at most 255 are allowed");
  g_clear_error (&error);

  config = sb_server_config_new_from_args (1, delimiter_65, FALSE, "", NULL, &error);
  g_assert_null (config);
  g_assert_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT);
  g_assert_cmpstr (error->message, ==, "delimiter is 65 bytes; at most 64 are allowed");
  g_clear_error (&error);

  config = sb_server_config_new_from_args (1, "", FALSE, "caf\xc3", NULL, &error);
  g_assert_null (config);
  g_assert_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "identifier"));
}

typedef struct
{
  const char *options;
  const char *message;    /* exact, or a substring when it starts with '*' */
} InvalidCase;

static const InvalidCase invalid_cases[] = {
  { "{'foo': <1>}", "unknown option 'foo'; known options are: " ALL_OPTIONS },
  { "{'max-connections': <uint32 5>, 'Bind-Address': <'::1'>}", "*'Bind-Address'" },
  { "{'flush-timeout-ms': <'1000'>}", "option 'flush-timeout-ms' must be of type 'u', not 's'" },
  { "{'flush-timeout-ms': <1000>}", "option 'flush-timeout-ms' must be of type 'u', not 'i'" },
  { "{'bind-address': <uint32 1>}", "option 'bind-address' must be of type 's', not 'u'" },
  { "{'bind-address': <objectpath '/a'>}", "option 'bind-address' must be of type 's', not 'o'" },
  { "{'delimiter-bytes': <'\\r\\n'>}", "option 'delimiter-bytes' must be of type 'ay', not 's'" },
  { "{'delimiter-bytes': <@an [1]>}", "option 'delimiter-bytes' must be of type 'ay', not 'an'" },
  { "{'exit-with-caller': <uint32 1>}", "option 'exit-with-caller' must be of type 'b', not 'u'" },
  { "{'batch': <'yes'>}", "option 'batch' must be of type 'b', not 's'" },
  { "{'strip-delimiter': <uint32 1>}", "option 'strip-delimiter' must be of type 'b', not 'u'" },
  { "{'allow-from': <'10.0.0.1'>}", "option 'allow-from' must be of type 'as', not 's'" },
  { "{'allow-from': <['10.0.0.1', 'localhost']>}",
    "allow-from entry 'localhost' is not a numeric IPv4 or IPv6 address, nor one followed by "
    "/ and a prefix length" },
  { "{'allow-from': <['10.0.0.0/33']>}",
    "allow-from entry '10.0.0.0/33' must have a prefix length from 0 to 32" },
  { "{'allow-from': <['::/129']>}", "allow-from entry '::/129' must have a prefix length from 0 to 128" },
  { "{'allow-from': <['10.1.2.3/8']>}",
    "allow-from entry '10.1.2.3/8' has bits set past its prefix length; the network is 10.0.0.0/8" },
  { "{'allow-from': <['fe80::1/10']>}", "*the network is fe80::/10" },
  { "{'allow-from': <['::ffff:10.0.0.0/80']>}",
    "allow-from entry '::ffff:10.0.0.0/80' reaches past the IPv4-mapped addresses ::ffff:0:0/96" },
  { "{'allow-from': <['']>}", "*allow-from entry ''" },
  { "{'allow-from': <['10.0.0.0/']>}", "*allow-from entry '10.0.0.0/'" },
  { "{'allow-from': <['/8']>}", "*allow-from entry '/8'" },
  { "{'allow-from': <['10.0.0.0/08']>}", "*allow-from entry '10.0.0.0/08'" },
  { "{'allow-from': <['10.0.0.0/+8']>}", "*allow-from entry '10.0.0.0/+8'" },
  { "{'allow-from': <['10.0.0.0/-1']>}", "*allow-from entry '10.0.0.0/-1'" },
  { "{'allow-from': <['10.0.0.0/8/8']>}", "*allow-from entry '10.0.0.0/8/8'" },
  { "{'allow-from': <['10.0.0.0 /8']>}", "*allow-from entry '10.0.0.0 /8'" },
  { "{'allow-from': <['10.0.0.1 ']>}", "*allow-from entry '10.0.0.1 '" },
  { "{'allow-from': <['fe80::1%lo']>}", "*allow-from entry 'fe80::1%lo'" },
  { "{'allow-from': <['10.0.0.0/0000000000008']>}", "*allow-from entry '10.0.0.0/0000000000008'" },
  { "{'max-message-bytes': <uint64 5>}", "option 'max-message-bytes' must be of type 'u', not 't'" },
  { "{'max-connections': <'3'>}", "option 'max-connections' must be of type 'u', not 's'" },
  { "{'udp-peer-timeout-ms': <true>}", "option 'udp-peer-timeout-ms' must be of type 'u', not 'b'" },
  { "{'max-message-bytes': <uint32 0>}", "option 'max-message-bytes' must be from 1 to 16777216, not 0" },
  { "{'max-message-bytes': <uint32 16777217>}", "*'max-message-bytes'" },
  { "{'max-connections': <uint32 0>}", "option 'max-connections' must be from 1 to 65536, not 0" },
  { "{'max-connections': <uint32 65537>}", "*'max-connections'" },
  { "{'delimiter-bytes': <b'0123456789012345678901234567890123456789012345678901234567890123'>}",
    "option 'delimiter-bytes' is 65 bytes; at most 64 are allowed" },
  { "{'bind-address': <'localhost'>}",
    "option 'bind-address' must be a numeric IPv4 or IPv6 address, not 'localhost'" },
  { "{'bind-address': <''>}", "*'bind-address'" },
  { "{'bind-address': <'192.168.1.256'>}", "*'bind-address'" },
  { "{'bind-address': <'1::2::3'>}", "*'bind-address'" },
  { "{'bind-address': <' ::1'>}", "*'bind-address'" },
};

static void
test_invalid_options (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (invalid_cases); i++) {
    const InvalidCase *c = &invalid_cases[i];
    g_autoptr(GError) error = NULL;
    g_autoptr(SbServerConfig) config = NULL;

    g_test_message ("options %s", c->options);
    config = new_with_options (c->options, &error);
    g_assert_null (config);
    g_assert_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT);
    if (c->message[0] == '*')
      g_assert_nonnull (strstr (error->message, c->message + 1));
    else
      g_assert_cmpstr (error->message, ==, c->message);
  }
}

static void
test_options_not_a_dict (void)
{
  g_autoptr(GVariant) options = g_variant_ref_sink (g_variant_new_uint32 (1));
  g_autoptr(SbServerConfig) config = NULL;

  g_test_expect_message (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL, "*G_VARIANT_TYPE_VARDICT*");
  config = sb_server_config_new_from_args (1, "", FALSE, "", options, NULL);
  g_test_assert_expected_messages ();
  g_assert_null (config);
}

static void
test_delimiter_bytes_overrides (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) binary = parse_options ("{'delimiter-bytes': <[byte 0x00, 0xff]>}");
  g_autoptr(GVariant) empty = parse_options ("{'delimiter-bytes': <@ay []>}");
  g_autoptr(SbServerConfig) config = NULL;

  config = sb_server_config_new_from_args (1, "\r\n", FALSE, "", binary, &error);
  g_assert_no_error (error);
  assert_delimiter (config, "\x00\xff", 2);
  g_clear_pointer (&config, sb_server_config_free);

  /* Empty bytes override too: no delimiter at all. */
  config = sb_server_config_new_from_args (1, "\r\n", FALSE, "", empty, &error);
  g_assert_no_error (error);
  assert_delimiter (config, NULL, 0);
}

static void
test_bind_address_canonical (void)
{
  static const char * const cases[][2] = {
    { "0:0::1", "::1" },
    { "0000:0000:0000:0000:0000:0000:0000:0001", "::1" },
    { "FE80::ABCD", "fe80::abcd" },
    { "::", "::" },
    { "0.0.0.0", "0.0.0.0" },
    { "127.0.0.1", "127.0.0.1" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *text = g_strdup_printf ("{'bind-address': <'%s'>}", cases[i][0]);
    g_autoptr(GError) error = NULL;
    g_autoptr(SbServerConfig) config = new_with_options (text, &error);

    g_assert_no_error (error);
    g_assert_cmpstr (config->bind_address, ==, cases[i][1]);
  }
}

static SbServerConfig *
new_full_config (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) options = parse_options ("{'bind-address': <'::1'>}");
  SbServerConfig *config;

  config = sb_server_config_new_from_args (5000, "\n", FALSE, "id", options, &error);
  g_assert_no_error (error);
  config->owner_uid = 1000;
  return config;
}

static void
test_same_settings (void)
{
  g_autoptr(SbServerConfig) a = new_full_config ();
  g_autoptr(SbServerConfig) b = NULL;

#define CHECK_DIFFERENT(statement) \
  G_STMT_START { \
    g_clear_pointer (&b, sb_server_config_free); \
    b = sb_server_config_copy (a); \
    g_assert_true (sb_server_config_same_settings (a, b)); \
    statement; \
    g_test_message ("%s", #statement); \
    g_assert_false (sb_server_config_same_settings (a, b)); \
    g_assert_false (sb_server_config_same_settings (b, a)); \
  } G_STMT_END

  CHECK_DIFFERENT (b->use_udp = TRUE);
  CHECK_DIFFERENT (g_free (b->identifier); b->identifier = g_strdup ("other"));
  CHECK_DIFFERENT (g_free (b->identifier); b->identifier = g_strdup (""));
  CHECK_DIFFERENT (g_bytes_unref (b->delimiter); b->delimiter = g_bytes_new ("\r", 1));
  CHECK_DIFFERENT (g_bytes_unref (b->delimiter); b->delimiter = g_bytes_new (NULL, 0));
  CHECK_DIFFERENT (g_clear_pointer (&b->bind_address, g_free));
  CHECK_DIFFERENT (g_free (b->bind_address); b->bind_address = g_strdup ("127.0.0.1"));
  CHECK_DIFFERENT (b->flush_timeout_ms++);
  CHECK_DIFFERENT (b->max_message_bytes++);
  CHECK_DIFFERENT (b->max_connections++);
  CHECK_DIFFERENT (b->udp_peer_timeout_ms++);
  CHECK_DIFFERENT (b->exit_with_caller = TRUE);
  CHECK_DIFFERENT (b->batch = TRUE);
  CHECK_DIFFERENT (b->strip_delimiter = TRUE);
  CHECK_DIFFERENT (g_strfreev (b->allow_from); b->allow_from = g_strsplit ("::1", ",", -1));
  CHECK_DIFFERENT (g_strfreev (b->allow_from); b->allow_from = g_strsplit ("::1,::2", ",", -1));
  CHECK_DIFFERENT (g_strfreev (b->multicast_groups); b->multicast_groups = g_strsplit ("ff15::1", ",", -1));
  CHECK_DIFFERENT (g_free (b->multicast_interface); b->multicast_interface = g_strdup ("eth0"));
#undef CHECK_DIFFERENT

  /* Port and owner are not settings. */
  g_clear_pointer (&b, sb_server_config_free);
  b = sb_server_config_copy (a);
  b->port = 6000;
  b->owner_uid = 0;
  g_assert_true (sb_server_config_same_settings (a, b));

  /* Equal contents in distinct storage are the same settings. */
  g_free (b->identifier);
  b->identifier = g_strdup ("id");
  g_bytes_unref (b->delimiter);
  b->delimiter = g_bytes_new ("\n", 1);
  g_assert_true (sb_server_config_same_settings (a, b));

  g_clear_pointer (&a->bind_address, g_free);
  g_clear_pointer (&b->bind_address, g_free);
  g_assert_true (sb_server_config_same_settings (a, b));
}

static void
test_copy_is_deep (void)
{
  g_autoptr(SbServerConfig) original = new_full_config ();
  g_autoptr(SbServerConfig) copy = sb_server_config_copy (original);

  g_assert_true (copy != original);
  g_assert_true (copy->identifier != original->identifier);
  g_assert_true (copy->bind_address != original->bind_address);
  g_assert_cmpuint (copy->port, ==, 5000);
  g_assert_cmpuint (copy->owner_uid, ==, 1000);
  g_assert_true (sb_server_config_same_settings (original, copy));

  /* The copy outlives the original (valgrind and ASan check the reads). */
  g_clear_pointer (&original, sb_server_config_free);
  g_assert_cmpstr (copy->identifier, ==, "id");
  g_assert_cmpstr (copy->bind_address, ==, "::1");
  assert_delimiter (copy, "\n", 1);
}

static void
test_free_null (void)
{
  sb_server_config_free (NULL);
}

/* GetServerOptions(): every option, defaults included. */
static void
test_to_options_defaults (void)
{
  g_autoptr(SbServerConfig) config = sb_server_config_new ();
  g_autoptr(GVariant) options = g_variant_ref_sink (sb_server_config_to_options (config));
  g_autofree char *text = g_variant_print (options, TRUE);

  g_assert_cmpstr (text, ==,
                   "{'allow-from': <@as []>, 'batch': <false>, 'delimiter-bytes': <@ay []>, "
                   "'exit-with-caller': <false>, 'flush-timeout-ms': <uint32 1000>, "
                   "'max-connections': <uint32 256>, 'max-message-bytes': <uint32 1048576>, "
                   "'strip-delimiter': <false>, 'udp-peer-timeout-ms': <uint32 60000>}");
}

/* What GetServerOptions() answers, given back to CreateServerWithOptions(),
 * asks for the same server: the HA side may re-create a server from it. */
static void
assert_options_round_trip (const SbServerConfig *config)
{
  g_autoptr(GVariant) options = g_variant_ref_sink (sb_server_config_to_options (config));
  g_autoptr(GError) error = NULL;
  g_autoptr(SbServerConfig) again = NULL;
  g_autofree char *text = g_variant_print (options, TRUE);

  g_test_message ("%s", text);
  /* The delimiter argument is overridden by delimiter-bytes. */
  again = sb_server_config_new_from_args (config->port, "ignored", config->use_udp,
                                          config->identifier, options, &error);
  g_assert_no_error (error);
  g_assert_true (sb_server_config_same_settings (config, again));
}

static void
test_to_options_round_trip (void)
{
  g_autoptr(SbServerConfig) defaults = sb_server_config_new ();
  g_autoptr(SbServerConfig) full = new_full_config ();
  g_autoptr(SbServerConfig) every = NULL;
  g_autoptr(GError) error = NULL;

  assert_options_round_trip (defaults);
  assert_options_round_trip (full);
  every = new_with_options ("{'bind-address': <'192.168.1.5'>,"
                            " 'delimiter-bytes': <[byte 0x00, 0xff, 0x03]>,"
                            " 'exit-with-caller': <true>,"
                            " 'flush-timeout-ms': <uint32 0>,"
                            " 'max-message-bytes': <uint32 4096>,"
                            " 'max-connections': <uint32 3>,"
                            " 'udp-peer-timeout-ms': <uint32 1234>,"
                            " 'batch': <true>,"
                            " 'strip-delimiter': <true>,"
                            " 'allow-from': <['192.168.1.0/24', 'fe80::/10', '::1']>}", &error);
  g_assert_no_error (error);
  assert_options_round_trip (every);
  every->use_udp = TRUE;
  assert_options_round_trip (every);
  g_clear_pointer (&every, sb_server_config_free);

  every = sb_server_config_new_from_args (5000, "", TRUE, "multicast", NULL, &error);
  g_assert_no_error (error);
  assert_options_round_trip (every);
  every->multicast_groups = g_strsplit ("239.1.2.3,ff15::1", ",", -1);
  every->multicast_interface = g_strdup ("eth0");
  assert_options_round_trip (every);
}

static void
test_multicast (void)
{
  g_autoptr(GVariant) options = NULL;
  g_autoptr(GVariant) shown = NULL;
  g_autoptr(SbServerConfig) config = NULL;
  g_autoptr(GError) error = NULL;

  options = g_variant_ref_sink (g_variant_new_parsed (
      "{'multicast-groups': <['239.1.2.3', 'FF15:0::1', '224.0.0.251']>,"
      " 'multicast-interface': <'eth0'>}"));
  config = sb_server_config_new_from_args (5353, "", TRUE, "", options, &error);
  g_assert_no_error (error);
  g_assert_cmpstrv (config->multicast_groups,
                    ((const char * const[]) { "239.1.2.3", "ff15::1", "224.0.0.251", NULL }));
  g_assert_cmpstr (config->multicast_interface, ==, "eth0");
  shown = g_variant_ref_sink (sb_server_config_to_options (config));
  g_assert_true (g_variant_lookup (shown, "multicast-interface", "&s", NULL));
  g_clear_pointer (&config, sb_server_config_free);

  /* UDP's only: a TCP server refuses them, and does not show them. */
  config = sb_server_config_new_from_args (5353, "", FALSE, "", options, &error);
  g_assert_null (config);
  g_assert_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "is for UDP servers only"));
  g_clear_error (&error);
  config = sb_server_config_new_from_args (5353, "", FALSE, "", NULL, &error);
  g_clear_pointer (&shown, g_variant_unref);
  shown = g_variant_ref_sink (sb_server_config_to_options (config));
  g_assert_false (g_variant_lookup (shown, "multicast-groups", "^as", NULL));
  g_assert_false (g_variant_lookup (shown, "multicast-interface", "&s", NULL));
}

typedef struct
{
  const char *options;
  const char *message;    /* a substring */
} UdpInvalidCase;

static const UdpInvalidCase udp_invalid_cases[] = {
  { "{'multicast-groups': <['10.0.0.1']>}",
    "multicast-groups entry '10.0.0.1' is not a numeric IPv4 or IPv6 multicast address" },
  { "{'multicast-groups': <['ff15::1', 'fe80::1']>}", "entry 'fe80::1' is not a numeric" },
  { "{'multicast-groups': <['']>}", "entry '' is not" },
  { "{'multicast-groups': <['239.1.2.3/32']>}", "entry '239.1.2.3/32' is not" },
  { "{'multicast-groups': <['239.1.2.3', 'FF15::1', '239.1.2.3']>}",
    "multicast-groups entry '239.1.2.3' names group 239.1.2.3 a second time" },
  { "{'multicast-groups': <['ff15::1', 'FF15:0::1']>}", "names group ff15::1 a second time" },
  { "{'multicast-groups': <'239.1.2.3'>}", "option 'multicast-groups' must be of type 'as', not 's'" },
  { "{'multicast-interface': <''>}",
    "option 'multicast-interface' must be a network interface name (1 to 15 bytes, "
    "without '/', ':' or white space), not ''" },
  { "{'multicast-interface': <'a-name-of-16-byt'>}", "not 'a-name-of-16-byt'" },
  { "{'multicast-interface': <'eth0:1'>}", "not 'eth0:1'" },
  { "{'multicast-interface': <'../x'>}", "not '../x'" },
  { "{'multicast-interface': <'eth 0'>}", "not 'eth 0'" },
  { "{'multicast-interface': <'..'>}", "not '..'" },
  { "{'multicast-interface': <uint32 2>}", "must be of type 's', not 'u'" },
  { "{'multicast-groups': <['239.1.2.3']>, 'bind-address': <'127.0.0.1'>}",
    "bind-address 127.0.0.1 is a unicast address" },
  { "{'multicast-groups': <['ff15::1']>, 'bind-address': <'0.0.0.0'>}",
    "multicast group ff15::1 and bind-address 0.0.0.0 are of different families" },
  { "{'bind-address': <'239.1.2.3'>, 'multicast-groups': <['239.1.2.3', 'ff15::1']>}",
    "multicast group ff15::1 and bind-address 239.1.2.3 are of different families" },
};

static void
test_multicast_invalid (void)
{
  g_autoptr(GVariantBuilder) many = g_variant_builder_new (G_VARIANT_TYPE ("as"));
  g_autoptr(GVariant) too_many = NULL;
  g_autoptr(SbServerConfig) config = NULL;
  g_autoptr(GError) error = NULL;
  static const char * const valid[] = {
    "{'multicast-groups': <['239.1.2.3']>, 'bind-address': <'0.0.0.0'>}",
    "{'multicast-groups': <['239.1.2.3']>, 'bind-address': <'239.1.2.3'>}",
    "{'multicast-groups': <['ff02::fb']>, 'bind-address': <'::'>}",
    "{'multicast-groups': <@as []>, 'bind-address': <'127.0.0.1'>}",
    "{'multicast-interface': <'lo'>, 'bind-address': <'127.0.0.1'>}",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (udp_invalid_cases); i++) {
    g_autoptr(GVariant) options = g_variant_ref_sink (g_variant_new_parsed (udp_invalid_cases[i].options));

    g_test_message ("options %s", udp_invalid_cases[i].options);
    config = sb_server_config_new_from_args (1, "", TRUE, "", options, &error);
    g_assert_null (config);
    g_assert_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (error->message, udp_invalid_cases[i].message));
    g_clear_error (&error);
  }
  for (gsize i = 0; i < G_N_ELEMENTS (valid); i++) {
    g_autoptr(GVariant) options = g_variant_ref_sink (g_variant_new_parsed (valid[i]));

    config = sb_server_config_new_from_args (1, "", TRUE, "", options, &error);
    g_assert_no_error (error);
    g_clear_pointer (&config, sb_server_config_free);
  }

  for (guint i = 0; i < SB_MAX_MULTICAST_GROUPS + 1; i++) {
    g_autofree char *group = g_strdup_printf ("239.0.0.%u", i);

    g_variant_builder_add (many, "s", group);
  }
  too_many = g_variant_ref_sink (g_variant_new_parsed ("{'multicast-groups': %v}",
                                                       g_variant_builder_end (many)));
  config = sb_server_config_new_from_args (1, "", TRUE, "", too_many, &error);
  g_assert_null (config);
  g_assert_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT);
  g_assert_cmpstr (error->message, ==, "option 'multicast-groups' has 21 entries; at most 20 are allowed");
}

static void
test_allow_from_canonical (void)
{
  static const char * const cases[][2] = {
    { "10.0.0.1", "10.0.0.1" },
    { "10.0.0.1/32", "10.0.0.1" },
    { "10.0.0.0/8", "10.0.0.0/8" },
    { "0.0.0.0/0", "0.0.0.0/0" },
    { "192.168.1.128/25", "192.168.1.128/25" },
    { "0:0::1", "::1" },
    { "::1/128", "::1" },
    { "::/0", "::/0" },
    { "FE80::/10", "fe80::/10" },
    { "2001:db8::/33", "2001:db8::/33" },
    /* An IPv4-mapped entry is the IPv4 entry it stands for. */
    { "::ffff:10.0.0.1", "10.0.0.1" },
    { "::ffff:10.0.0.0/104", "10.0.0.0/8" },
    { "::ffff:0:0/96", "0.0.0.0/0" },
  };
  g_autoptr(GVariant) options = NULL;
  g_autoptr(SbServerConfig) config = NULL;
  g_autoptr(GError) error = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *canonical = sb_allow_entry_canonical (cases[i][0], &error);

    g_assert_no_error (error);
    g_assert_cmpstr (canonical, ==, cases[i][1]);
  }

  /* An empty list admits everyone, as no list does: the same setting. */
  options = g_variant_ref_sink (g_variant_new_parsed ("{'allow-from': <@as []>}"));
  config = sb_server_config_new_from_args (1, "", FALSE, "", options, &error);
  g_assert_no_error (error);
  g_assert_null (config->allow_from);
}

static void
test_allow_from_too_many (void)
{
  g_autoptr(GVariantBuilder) entries = g_variant_builder_new (G_VARIANT_TYPE ("as"));
  g_autoptr(GVariant) options = NULL;
  g_autoptr(SbServerConfig) config = NULL;
  g_autoptr(GError) error = NULL;
  GVariantBuilder dict;

  for (guint i = 0; i < SB_MAX_ALLOW_FROM + 1; i++) {
    g_autofree char *entry = g_strdup_printf ("10.0.%u.%u", i / 256, i % 256);

    g_variant_builder_add (entries, "s", entry);
  }
  g_variant_builder_init (&dict, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&dict, "{sv}", "allow-from", g_variant_builder_end (entries));
  options = g_variant_ref_sink (g_variant_builder_end (&dict));
  config = sb_server_config_new_from_args (1, "", FALSE, "", options, &error);
  g_assert_null (config);
  g_assert_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT);
  g_assert_cmpstr (error->message, ==, "option 'allow-from' has 257 entries; at most 256 are allowed");
}

static gboolean
admits (const SbAllowList *list,
        const char        *address)
{
  g_autoptr(GInetAddress) inet = g_inet_address_new_from_string (address);

  g_assert_nonnull (inet);
  return sb_allow_list_admits (list, inet);
}

static void
test_allow_from_matching (void)
{
  static const char * const entries[] = {
    "10.0.0.0/8", "192.168.1.5", "172.16.0.0/12", "2001:db8::/33", "::1", NULL
  };
  static const char * const v6_all[] = { "::/0", NULL };
  static const char * const v4_all[] = { "0.0.0.0/0", NULL };
  g_autoptr(SbAllowList) list = sb_allow_list_new (entries);
  g_autoptr(SbAllowList) six = sb_allow_list_new (v6_all);
  g_autoptr(SbAllowList) four = sb_allow_list_new (v4_all);
  g_autoptr(SbAllowList) none = sb_allow_list_new (NULL);

  g_assert_true (admits (list, "10.0.0.0"));
  g_assert_true (admits (list, "10.255.255.255"));
  g_assert_false (admits (list, "11.0.0.0"));
  g_assert_false (admits (list, "9.255.255.255"));
  g_assert_true (admits (list, "192.168.1.5"));
  g_assert_false (admits (list, "192.168.1.4"));
  g_assert_false (admits (list, "192.168.1.6"));
  g_assert_true (admits (list, "172.31.255.255"));
  g_assert_false (admits (list, "172.32.0.0"));
  g_assert_true (admits (list, "2001:db8:7fff::1"));
  g_assert_false (admits (list, "2001:db8:8000::1"));
  g_assert_true (admits (list, "::1"));
  g_assert_false (admits (list, "::2"));
  /* IPv4 peers of a dual-stack socket arrive mapped: they are IPv4. */
  g_assert_true (admits (list, "::ffff:10.1.2.3"));
  g_assert_true (admits (list, "::ffff:192.168.1.5"));
  g_assert_false (admits (list, "::ffff:192.168.1.6"));

  /* A family is matched by its own entries only. */
  g_assert_true (admits (six, "fe80::1"));
  g_assert_false (admits (six, "127.0.0.1"));
  g_assert_false (admits (six, "::ffff:127.0.0.1"));
  g_assert_true (admits (four, "127.0.0.1"));
  g_assert_true (admits (four, "::ffff:127.0.0.1"));
  g_assert_false (admits (four, "::1"));
  g_assert_false (admits (none, "127.0.0.1"));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/config/defaults", test_defaults);
  g_test_add_func ("/config/from-args", test_from_args);
  g_test_add_func ("/config/delimiter-not-unescaped", test_delimiter_not_unescaped);
  g_test_add_func ("/config/every-option", test_every_option);
  g_test_add_func ("/config/range-limits-accepted", test_range_limits_accepted);
  g_test_add_func ("/config/length-limits", test_length_limits);
  g_test_add_func ("/config/invalid-options", test_invalid_options);
  g_test_add_func ("/config/options-not-a-dict", test_options_not_a_dict);
  g_test_add_func ("/config/delimiter-bytes-overrides", test_delimiter_bytes_overrides);
  g_test_add_func ("/config/bind-address-canonical", test_bind_address_canonical);
  g_test_add_func ("/config/same-settings", test_same_settings);
  g_test_add_func ("/config/copy-is-deep", test_copy_is_deep);
  g_test_add_func ("/config/free-null", test_free_null);
  g_test_add_func ("/config/to-options/defaults", test_to_options_defaults);
  g_test_add_func ("/config/to-options/round-trip", test_to_options_round_trip);
  g_test_add_func ("/config/allow-from/canonical", test_allow_from_canonical);
  g_test_add_func ("/config/allow-from/too-many", test_allow_from_too_many);
  g_test_add_func ("/config/allow-from/matching", test_allow_from_matching);
  g_test_add_func ("/config/multicast", test_multicast);
  g_test_add_func ("/config/multicast/invalid", test_multicast_invalid);

  return g_test_run ();
}
