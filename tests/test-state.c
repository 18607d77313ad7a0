/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/resource.h>

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "sb-state.h"

/* One valid server, one member per line, so that a case can drop or
 * replace any one of them. */
static const char * const valid_members[][2] = {
  { "port", "5000" },
  { "udp", "false" },
  { "identifier", "\"x\"" },
  { "delimiter", "\"DQo=\"" },
  { "bind-address", "\"::1\"" },
  { "flush-timeout-ms", "1000" },
  { "max-message-bytes", "1048576" },
  { "max-connections", "256" },
  { "udp-peer-timeout-ms", "60000" },
  { "owner-uid", "1000" },
};

#define VALID_SERVER \
  "{\"port\": 4000, \"udp\": true, \"identifier\": \"first\", \"delimiter\": \"\"," \
  " \"flush-timeout-ms\": 0, \"max-message-bytes\": 1, \"max-connections\": 1," \
  " \"udp-peer-timeout-ms\": 0, \"owner-uid\": 0}"

static SbServerConfig *
new_config (guint16      port,
            gboolean     use_udp,
            const char  *identifier,
            const void  *delimiter,
            gsize        delimiter_len,
            const char  *bind_address)
{
  SbServerConfig *config = sb_server_config_new ();

  config->port = port;
  config->use_udp = use_udp;
  g_free (config->identifier);
  config->identifier = g_strdup (identifier);
  g_bytes_unref (config->delimiter);
  config->delimiter = g_bytes_new (delimiter, delimiter_len);
  config->bind_address = g_strdup (bind_address);
  return config;
}

static GPtrArray *
new_configs (void)
{
  GPtrArray *configs = g_ptr_array_new_with_free_func ((GDestroyNotify) sb_server_config_free);
  g_autofree char *long_identifier = g_strnfill (255, 'z');
  guint8 long_delimiter[64];
  SbServerConfig *config;

  for (gsize i = 0; i < sizeof long_delimiter; i++)
    long_delimiter[i] = (guint8) (255 - i * 4);

  config = new_config (5000, FALSE, "kitchen", "\r\n", 2, NULL);
  config->owner_uid = 1000;
  g_ptr_array_add (configs, config);

  config = new_config (5000, TRUE, "udp \"quoted\" \\ caf\xc3\xa9\n", "\x00\xff\x03", 3, "::1");
  config->flush_timeout_ms = 0;
  config->max_message_bytes = 1;
  config->max_connections = 1;
  config->udp_peer_timeout_ms = 0;
  g_ptr_array_add (configs, config);

  config = new_config (65535, FALSE, long_identifier, long_delimiter, sizeof long_delimiter,
                       "192.168.1.5");
  config->flush_timeout_ms = G_MAXUINT32;
  config->max_message_bytes = 16 * 1024 * 1024;
  config->max_connections = 65536;
  config->udp_peer_timeout_ms = G_MAXUINT32;
  config->owner_uid = G_MAXUINT32;
  config->batch = TRUE;
  config->strip_delimiter = TRUE;
  config->allow_from = g_strsplit ("10.0.0.0/8,::1,fe80::/10", ",", -1);
  g_ptr_array_add (configs, config);

  config = new_config (5353, TRUE, "mdns", "", 0, NULL);
  config->multicast_groups = g_strsplit ("224.0.0.251,ff02::fb", ",", -1);
  config->multicast_interface = g_strdup ("eth0");
  g_ptr_array_add (configs, config);

  g_ptr_array_add (configs, new_config (1, TRUE, "", NULL, 0, "fe80::1"));
  return configs;
}

static void
assert_same_configs (GPtrArray *a,
                     GPtrArray *b)
{
  g_assert_cmpuint (a->len, ==, b->len);
  for (guint i = 0; i < a->len; i++) {
    const SbServerConfig *x = g_ptr_array_index (a, i);
    const SbServerConfig *y = g_ptr_array_index (b, i);

    g_assert_cmpuint (x->port, ==, y->port);
    g_assert_cmpuint (x->owner_uid, ==, y->owner_uid);
    g_assert_true (sb_server_config_same_settings (x, y));
  }
}

static GPtrArray *
parse_ok (const char *text)
{
  g_autoptr(GError) error = NULL;
  GPtrArray *configs = sb_state_parse (text, strlen (text), &error);

  g_assert_no_error (error);
  g_assert_nonnull (configs);
  return configs;
}

static void
test_round_trip (void)
{
  g_autoptr(GPtrArray) configs = new_configs ();
  g_autoptr(GPtrArray) parsed = NULL;
  g_autofree char *text = NULL;
  g_autofree char *again = NULL;
  gsize len;

  text = sb_state_serialize (configs, &len);
  g_test_message ("%s", text);
  g_assert_cmpuint (len, ==, strlen (text));
  g_assert_cmpint (text[len - 1], ==, '\n');

  parsed = parse_ok (text);
  assert_same_configs (configs, parsed);

  /* Stable: what was read is written back unchanged. */
  again = sb_state_serialize (parsed, NULL);
  g_assert_cmpstr (again, ==, text);
}

static void
test_round_trip_empty (void)
{
  g_autoptr(GPtrArray) configs = g_ptr_array_new ();
  g_autoptr(GPtrArray) parsed = NULL;
  g_autofree char *text = sb_state_serialize (configs, NULL);

  parsed = parse_ok (text);
  g_assert_cmpuint (parsed->len, ==, 0);
}

/* Pins the format from the reading side: a file written by hand, or by
 * another version of sockbridge, in the documented format. */
static void
test_documented_format (void)
{
  g_autoptr(GPtrArray) configs = NULL;
  const SbServerConfig *config;

  configs = parse_ok ("{\"version\": 1, \"servers\": [{\"port\": 5000, \"udp\": false,"
                      " \"identifier\": \"x\", \"delimiter\": \"AP8=\","
                      " \"bind-address\": \"0:0::1\", \"flush-timeout-ms\": 10,"
                      " \"max-message-bytes\": 20, \"max-connections\": 30,"
                      " \"udp-peer-timeout-ms\": 40, \"owner-uid\": 1000}]}");
  g_assert_cmpuint (configs->len, ==, 1);
  config = g_ptr_array_index (configs, 0);
  g_assert_cmpuint (config->port, ==, 5000);
  g_assert_false (config->use_udp);
  g_assert_cmpstr (config->identifier, ==, "x");
  g_assert_cmpmem (g_bytes_get_data (config->delimiter, NULL),
                   g_bytes_get_size (config->delimiter), "\x00\xff", 2);
  g_assert_cmpstr (config->bind_address, ==, "::1");
  g_assert_cmpuint (config->flush_timeout_ms, ==, 10);
  g_assert_cmpuint (config->max_message_bytes, ==, 20);
  g_assert_cmpuint (config->max_connections, ==, 30);
  g_assert_cmpuint (config->udp_peer_timeout_ms, ==, 40);
  g_assert_false (config->exit_with_caller);
  g_assert_cmpuint (config->owner_uid, ==, 1000);
}

static void
test_written_format (void)
{
  g_autoptr(GPtrArray) configs = g_ptr_array_new_with_free_func ((GDestroyNotify) sb_server_config_free);
  g_autofree char *text = NULL;

  g_ptr_array_add (configs, new_config (5000, FALSE, "x", "\x00\xff", 2, NULL));
  g_ptr_array_add (configs, new_config (5001, TRUE, "y", "", 0, "::1"));
  text = sb_state_serialize (configs, NULL);

  /* Pretty-printed, one member per line. */
  g_assert_nonnull (strstr (text, "\n  \"version\" : 1,\n"));
  g_assert_nonnull (strstr (text, "\n      \"port\" : 5000,\n"));
  g_assert_nonnull (strstr (text, "\"udp\" : false,"));
  g_assert_nonnull (strstr (text, "\"udp\" : true,"));
  g_assert_nonnull (strstr (text, "\"delimiter\" : \"AP8=\","));
  g_assert_nonnull (strstr (text, "\"bind-address\" : \"::1\","));
  /* Omitted when it is NULL: only the second server has one. */
  g_assert_true (strstr (text, "bind-address") == g_strrstr (text, "bind-address"));
  g_assert_nonnull (strstr (text, "\"max-message-bytes\" : 1048576,"));
  g_assert_nonnull (strstr (text, "\"owner-uid\" : 0\n"));
  g_assert_null (strstr (text, "exit"));
  /* Written only when true, so older daemons still read the file. */
  g_assert_null (strstr (text, "batch"));
  g_assert_null (strstr (text, "strip-delimiter"));
  g_assert_null (strstr (text, "allow-from"));
}

static void
test_exit_with_caller_not_written (void)
{
  g_autoptr(GPtrArray) configs = new_configs ();
  g_autoptr(GPtrArray) parsed = NULL;
  g_autofree char *text = NULL;
  SbServerConfig *config;

  config = g_ptr_array_index (configs, 1);
  config->exit_with_caller = TRUE;
  text = sb_state_serialize (configs, NULL);
  g_assert_null (strstr (text, "quoted"));

  parsed = parse_ok (text);
  g_ptr_array_remove_index (configs, 1);
  assert_same_configs (configs, parsed);
}

static void
assert_invalid (const char *data,
                gsize       len,
                const char *message)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) configs = NULL;

  configs = sb_state_parse (data, len, &error);
  g_assert_null (configs);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_test_message ("%s", error->message);
  if (message != NULL)
    g_assert_nonnull (strstr (error->message, message));
}

static void
test_invalid_documents (void)
{
  static const char * const cases[][2] = {
    { "", NULL },
    { " \n", NULL },
    { "not json", "not valid JSON" },
    { "{", "not valid JSON" },
    { "{\"version\": 1, \"servers\": []", "not valid JSON" },
    { "{\"version\": 1, \"servers\": [],}", NULL },
    { "{\"version\": 1, \"servers\": []} {}", "line 1, column 31: more data after the JSON value" },
    { "{\"version\": 1, \"servers\": []}\n x", "line 2, column 2: more data" },
    /* What json-glib 1.6 alone would let through. */
    { "{'version': 1, 'servers': []}", "not valid JSON" },
    { "/* c */ {\"version\": 1, \"servers\": []}", "not valid JSON" },
    { "{\"version\": 1, \"servers\": [] // c\n}", "not valid JSON" },
    { "{\"version\": 0x1, \"servers\": []}", "not valid JSON" },
    { "{\"version\": 01, \"servers\": []}", "not valid JSON" },
    { "{\"version\": +1, \"servers\": []}", "not valid JSON" },
    { "{\"version\": 1., \"servers\": []}", "not valid JSON" },
    { "{\"version\": .5, \"servers\": []}", "not valid JSON" },
    { "{\"version\": 1e, \"servers\": []}", "not valid JSON" },
    { "{\"version\": tru, \"servers\": []}", "not valid JSON" },
    { "{\"version\": 1 \"servers\": []}", "expected ',' or '}'" },
    { "{\"version\" 1, \"servers\": []}", "expected ':'" },
    { "{version: 1, servers: []}", "expected a member name" },
    { "{\"version\": 1, \"servers\": [1 2]}", "expected ',' or ']'" },
    { "{\"version\": 1, \"servers\": [\"\\x41\"]}", "invalid escape" },
    { "{\"version\": 1, \"servers\": [\"\\u12\"]}", "hex digits" },
    { "{\"version\": 1, \"servers\": [\"a\tb\"]}", "control character" },
    { "{\"version\": 1, \"servers\": [\"ab", "unexpected end of data" },
    { "{\"version\": 18446744073709551617, \"servers\": []}", "integer too large" },
    { "[]", "top level" },
    { "42", "top level" },
    { "null", "top level" },
    { "\"version\"", "top level" },
    { "{}", "'version'" },
    { "{\"servers\": []}", "'version'" },
    { "{\"version\": \"1\", \"servers\": []}", "'version'" },
    { "{\"version\": 1.0, \"servers\": []}", "'version'" },
    { "{\"version\": null, \"servers\": []}", "'version'" },
    { "{\"version\": 2, \"servers\": []}", "version 2 is not supported" },
    { "{\"version\": 0, \"servers\": []}", "version 0" },
    { "{\"version\": -1, \"servers\": []}", "version -1" },
    { "{\"version\": 1}", "'servers'" },
    { "{\"version\": 1, \"servers\": {}}", "'servers'" },
    { "{\"version\": 1, \"servers\": null}", "'servers'" },
    { "{\"version\": 1, \"servers\": \"[]\"}", "'servers'" },
    { "{\"version\": 1, \"servers\": [], \"extra\": 1}", "'extra'" },
    { "{\"version\": 1, \"servers\": [1]}", "server 1: " },
    { "{\"version\": 1, \"servers\": [null]}", "server 1: " },
    { "{\"version\": 1, \"servers\": [[]]}", "server 1: " },
    { "{\"version\": 1, \"servers\": [" VALID_SERVER ", \"x\"]}", "server 2: " },
    { "{\"version\": 1, \"servers\": [" VALID_SERVER ", " VALID_SERVER "]}",
      "server 2: port 4000/udp is already in server 1" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_test_message ("case: %s", cases[i][0]);
    assert_invalid (cases[i][0], strlen (cases[i][0]), cases[i][1]);
  }
}

static void
test_invalid_bytes (void)
{
  static const char nul[] = "{\"version\": 1, \"servers\": []}\0";
  static const char nul_in_string[] = "{\"version\": 1, \"servers\": [], \"a\0b\": 1}";
  static const char latin1[] = "{\"version\": 1, \"servers\": [], \"caf\xe9\": 1}";
  g_autofree char *deep_arrays = NULL;
  g_autofree char *deep_objects = NULL;
  g_autoptr(GString) deep = g_string_new (NULL);

  assert_invalid (nul, sizeof nul - 1, "UTF-8");
  assert_invalid (nul_in_string, sizeof nul_in_string - 1, "UTF-8");
  assert_invalid (latin1, sizeof latin1 - 1, "UTF-8");

  /* Deep nesting must neither crash nor be accepted. */
  deep_arrays = g_strnfill (100000, '[');
  assert_invalid (deep_arrays, strlen (deep_arrays), "nested too deeply");
  for (guint i = 0; i < 100000; i++)
    g_string_append (deep, "{\"a\":");
  assert_invalid (deep->str, deep->len, NULL);
  assert_invalid (deep->str, deep->len, "nested too deeply");
  deep_objects = g_strdup_printf ("{\"version\": 1, \"servers\": [], \"x\": %s}",
                                  "[[[[[[[[[[{\"a\": {}}]]]]]]]]]]");
  assert_invalid (deep_objects, strlen (deep_objects), "'x'");

  /* No data at all. */
  assert_invalid (NULL, 0, NULL);
}

/* Builds {"version": 1, "servers": [VALID_SERVER, X]} where X is the valid
 * server with @name replaced by @value, or dropped when @value is NULL. */
static char *
document_with_member (const char *name,
                      const char *value)
{
  g_autoptr(GString) server = g_string_new ("{");
  gboolean known = FALSE;

  for (gsize i = 0; i < G_N_ELEMENTS (valid_members); i++) {
    const char *member_value = valid_members[i][1];

    if (g_str_equal (valid_members[i][0], name)) {
      member_value = value;
      known = TRUE;
    }
    if (member_value != NULL)
      g_string_append_printf (server, "\"%s\": %s, ", valid_members[i][0], member_value);
  }
  if (!known && value != NULL)
    g_string_append_printf (server, "\"%s\": %s, ", name, value);
  g_string_truncate (server, server->len - 2);
  g_string_append (server, "}");
  return g_strdup_printf ("{\"version\": 1, \"servers\": [" VALID_SERVER ", %s]}", server->str);
}

static void
test_valid_member_template (void)
{
  g_autofree char *document = document_with_member ("", NULL);
  g_autoptr(GPtrArray) configs = parse_ok (document);
  g_autofree char *no_bind = document_with_member ("bind-address", NULL);
  g_autoptr(GPtrArray) no_bind_configs = parse_ok (no_bind);

  g_autofree char *batch = document_with_member ("batch", "true");
  g_autoptr(GPtrArray) batch_configs = parse_ok (batch);

  g_assert_cmpuint (configs->len, ==, 2);
  g_assert_cmpstr (((SbServerConfig *) g_ptr_array_index (configs, 1))->bind_address, ==, "::1");
  g_assert_null (((SbServerConfig *) g_ptr_array_index (no_bind_configs, 1))->bind_address);
  /* Optional: absent is false. */
  g_assert_false (((SbServerConfig *) g_ptr_array_index (configs, 1))->batch);
  g_assert_true (((SbServerConfig *) g_ptr_array_index (batch_configs, 1))->batch);
}

/* The members added after the first format are optional: absent is the
 * option's default, and each is read as its option. */
static void
test_option_members (void)
{
  g_autofree char *strip = document_with_member ("strip-delimiter", "true");
  g_autofree char *no_strip = document_with_member ("strip-delimiter", "false");
  g_autoptr(GPtrArray) strip_configs = parse_ok (strip);
  g_autoptr(GPtrArray) no_strip_configs = parse_ok (no_strip);
  g_autoptr(GPtrArray) configs = NULL;
  g_autofree char *text = NULL;

  g_assert_true (((SbServerConfig *) g_ptr_array_index (strip_configs, 1))->strip_delimiter);
  g_assert_false (((SbServerConfig *) g_ptr_array_index (no_strip_configs, 1))->strip_delimiter);

  /* Written only when not the default: false is not written back. */
  text = sb_state_serialize (no_strip_configs, NULL);
  g_assert_null (strstr (text, "strip-delimiter"));
  g_clear_pointer (&text, g_free);
  text = sb_state_serialize (strip_configs, NULL);
  g_assert_nonnull (strstr (text, "\"strip-delimiter\" : true"));
  configs = parse_ok (text);
  assert_same_configs (strip_configs, configs);
}

#define UDP_SERVER(members) \
  "{\"version\": 1, \"servers\": [{\"port\": 5353, \"udp\": true, \"identifier\": \"m\"," \
  " \"delimiter\": \"\", \"flush-timeout-ms\": 0, \"max-message-bytes\": 1," \
  " \"max-connections\": 1, \"udp-peer-timeout-ms\": 0, \"owner-uid\": 0" members "}]}"

static void
test_multicast_members (void)
{
  static const char * const invalid_cases[][2] = {
    { UDP_SERVER (", \"multicast-groups\": [\"10.0.0.1\"]"),
      "server 1: multicast-groups entry '10.0.0.1' is not a numeric IPv4 or IPv6 multicast" },
    { UDP_SERVER (", \"multicast-groups\": \"239.1.2.3\""),
      "server 1: 'multicast-groups' must be an array of strings" },
    { UDP_SERVER (", \"multicast-interface\": \"\""),
      "server 1: option 'multicast-interface' must be a network interface name" },
    { UDP_SERVER (", \"multicast-interface\": [\"eth0\"]"),
      "server 1: 'multicast-interface' must be a string" },
    { UDP_SERVER (", \"multicast-groups\": [\"239.1.2.3\"], \"bind-address\": \"127.0.0.1\""),
      "server 1: bind-address 127.0.0.1 is a unicast address" },
    { "{\"version\": 1, \"servers\": [{\"port\": 5353, \"udp\": false, \"identifier\": \"m\","
      " \"delimiter\": \"\", \"flush-timeout-ms\": 0, \"max-message-bytes\": 1,"
      " \"max-connections\": 1, \"udp-peer-timeout-ms\": 0, \"owner-uid\": 0,"
      " \"multicast-groups\": [\"239.1.2.3\"]}]}",
      "server 1: option 'multicast-groups' is for UDP servers only" },
  };
  g_autoptr(GPtrArray) configs = parse_ok (UDP_SERVER (", \"multicast-groups\": [\"FF02::FB\"],"
                                                       " \"multicast-interface\": \"eth0\""));
  g_autoptr(GPtrArray) none = parse_ok (UDP_SERVER (", \"multicast-groups\": []"));
  const SbServerConfig *config = g_ptr_array_index (configs, 0);
  g_autofree char *text = NULL;

  g_assert_cmpstrv (config->multicast_groups, ((const char * const[]) { "ff02::fb", NULL }));
  g_assert_cmpstr (config->multicast_interface, ==, "eth0");
  g_assert_null (((SbServerConfig *) g_ptr_array_index (none, 0))->multicast_groups);
  text = sb_state_serialize (none, NULL);
  g_assert_null (strstr (text, "multicast"));

  for (gsize i = 0; i < G_N_ELEMENTS (invalid_cases); i++)
    assert_invalid (invalid_cases[i][0], strlen (invalid_cases[i][0]), invalid_cases[i][1]);
}

/* The fuzz target's seeds that are valid must stay valid, or the fuzzer
 * would start from refused files only and never reach the readers of the
 * members. */
static void
test_valid_seeds (void)
{
  static const char * const seeds[] = { "valid.json", "options.json", "tls.json" };

  for (gsize i = 0; i < G_N_ELEMENTS (seeds); i++) {
    g_autofree char *path = g_test_build_filename (G_TEST_DIST, "fuzz", "corpus", "state",
                                                   seeds[i], NULL);
    g_autofree char *text = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) configs = NULL;

    g_file_get_contents (path, &text, NULL, &error);
    g_assert_no_error (error);
    configs = parse_ok (text);
    g_assert_cmpuint (configs->len, >, 0);
  }
}

/* ---- json-glib alone ----------------------------------------------------
 *
 * Why src/sb-json-check.c runs before json-glib: each case is a value that
 * json-glib reads without an error as something else than the text says,
 * so that no check of the parsed value's type or range can tell. json-glib
 * 1.6 (Debian 12) is the one the daemon must live with; what another
 * version does is only reported. Either way sb_state_parse() refuses the
 * file. */

typedef struct
{
  const char *name;
  const char *json;         /* the value of member "v" */
  const char *read_by_1_6;  /* what json-glib 1.6 makes of it, as JSON */
} JsonGlibCase;

static const JsonGlibCase json_glib_misreads[] = {
  /* A port written with a leading zero is octal to json-glib 1.6. */
  { "octal", "05000", "2560" },
  /* A negative integer past 64 bits wraps into range. */
  { "negative-wrap", "-18446744073709546616", "5000" },
  /* A string stops at \u0000: an identifier silently cut short. */
  { "nul-escape", "\"a\\u0000b\"", "\"a\"" },
  /* An escape JSON does not have loses its backslash. */
  { "bad-escape", "\"\\x41\"", "\"x41\"" },
  /* Not misreads, but not JSON either: what json-glib lets through. */
  { "hex", "0x1388", "5000" },
  { "single-quotes", "'x'", "\"x\"" },
  { "block-comment", "/* c */ 5000", "5000" },
  /* A positive integer past 64 bits becomes -1: the range check would
   * refuse that, the syntax check refuses it first. */
  { "positive-huge", "18446744073709556616", "-1" },
};

/* What json-glib alone makes of {"v": @json}, as JSON text; NULL when it
 * refuses it. */
static char *
json_glib_reads (const char *json)
{
  g_autofree char *document = g_strdup_printf ("{\"v\": %s}", json);
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) error = NULL;
  JsonObject *object;

  if (!json_parser_load_from_data (parser, document, -1, &error)) {
    g_test_message ("json-glib refuses %s: %s", document, error->message);
    return NULL;
  }
  object = json_node_get_object (json_parser_get_root (parser));
  return json_to_string (json_object_get_member (object, "v"), FALSE);
}

static void
test_json_glib_misreads (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (json_glib_misreads); i++) {
    const JsonGlibCase *c = &json_glib_misreads[i];
    g_autofree char *read = json_glib_reads (c->json);
    g_autofree char *port = document_with_member ("port", c->json);
    g_autofree char *identifier = document_with_member ("identifier", c->json);

    g_test_message ("%s: json-glib %d.%d reads %s as %s", c->name, JSON_MAJOR_VERSION,
                    JSON_MINOR_VERSION, c->json, read != NULL ? read : "(refused)");
#if !JSON_CHECK_VERSION (1, 7, 0)
    g_assert_cmpstr (read, ==, c->read_by_1_6);
#endif
    assert_invalid (port, strlen (port), "not valid JSON");
    assert_invalid (identifier, strlen (identifier), "not valid JSON");
  }
}

/* json-glib 1.6 reads only the first of two documents (and leaks the
 * second, hence the subprocess, out of valgrind's sight), and 1.10 makes
 * an array of them: a file with a second half appended is taken for its
 * first half, or for something else. */
static void
test_json_glib_second_value (void)
{
  static const char two[] = "{\"version\": 1, \"servers\": []} {\"version\": 1, "
                            "\"servers\": [" VALID_SERVER "]}";

  if (g_test_subprocess ()) {
    g_autoptr(JsonParser) parser = json_parser_new ();
    g_autoptr(GError) error = NULL;
    g_autofree char *read = NULL;

    g_assert_true (json_parser_load_from_data (parser, two, -1, &error));
    read = json_to_string (json_parser_get_root (parser), FALSE);
    g_print ("%s", read);
    return;
  }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed ();
#if !JSON_CHECK_VERSION (1, 7, 0)
  g_test_trap_assert_stdout ("{\"version\":1,\"servers\":[]}");
#endif
  assert_invalid (two, strlen (two), "more data after the JSON value");
}

/* A million '[' (1 MB, well under the 4 MiB bound on the file): json-glib
 * 1.6 recurses once per level and overflows an 8 MiB stack. The daemon
 * would crash at every start. */
#define DEEP_LEVELS 1000000

static void
test_json_glib_deep_nesting (void)
{
  g_autofree char *deep = g_strnfill (DEEP_LEVELS, '[');

  if (g_test_subprocess ()) {
    struct rlimit stack = { 8 * 1024 * 1024, 8 * 1024 * 1024 };
    struct rlimit no_core = { 0, 0 };
    g_autoptr(JsonParser) parser = json_parser_new ();

    /* The main thread's stack grows up to the limit of the moment. */
    setrlimit (RLIMIT_STACK, &stack);
    setrlimit (RLIMIT_CORE, &no_core);
    g_assert_false (json_parser_load_from_data (parser, deep, DEEP_LEVELS, NULL));
    return;
  }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
#if !JSON_CHECK_VERSION (1, 7, 0)
  g_test_trap_assert_failed ();
#endif
  g_test_message ("json-glib on %d nested arrays: %s", DEEP_LEVELS,
                  g_test_trap_has_passed () ? "refused" : "crashed");
  assert_invalid (deep, DEEP_LEVELS, "nested too deeply");
}

static void
test_allow_from_member (void)
{
  g_autofree char *document = document_with_member ("allow-from",
                                                    "[\"10.0.0.0/8\", \"0:0::1\", \"::ffff:1.2.3.4\"]");
  g_autofree char *empty = document_with_member ("allow-from", "[]");
  g_autoptr(GPtrArray) configs = parse_ok (document);
  g_autoptr(GPtrArray) empty_configs = parse_ok (empty);
  const SbServerConfig *config = g_ptr_array_index (configs, 1);
  g_autofree char *text = NULL;

  /* Read as the option is: canonical entries, and empty is everyone. */
  g_assert_cmpstrv (config->allow_from,
                    ((const char * const[]) { "10.0.0.0/8", "::1", "1.2.3.4", NULL }));
  g_assert_null (((SbServerConfig *) g_ptr_array_index (empty_configs, 1))->allow_from);
  text = sb_state_serialize (configs, NULL);
  g_assert_nonnull (strstr (text, "\"allow-from\" : [\n        \"10.0.0.0/8\",\n        \"::1\","));
  g_clear_pointer (&text, g_free);
  text = sb_state_serialize (empty_configs, NULL);
  g_assert_null (strstr (text, "allow-from"));
}

/* Escapes are JSON's own, surrogate pairs included. */
static void
test_string_escapes (void)
{
  g_autofree char *document = document_with_member ("identifier",
                                                    "\"\\ud83d\\ude00 \\/ \\\" \\t\\u00e9\"");
  g_autoptr(GPtrArray) configs = parse_ok (document);

  g_assert_cmpstr (((SbServerConfig *) g_ptr_array_index (configs, 1))->identifier, ==,
                   "\xf0\x9f\x98\x80 / \" \t\xc3\xa9");
}

static void
test_missing_members (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (valid_members); i++) {
    const char *name = valid_members[i][0];
    g_autofree char *document = NULL;
    g_autofree char *expected = NULL;

    if (g_str_equal (name, "bind-address"))
      continue;   /* optional, see test_valid_member_template */
    document = document_with_member (name, NULL);
    expected = g_strdup_printf ("server 2: '%s' is missing", name);
    g_test_message ("%s", document);
    assert_invalid (document, strlen (document), expected);
  }
}

static void
test_invalid_members (void)
{
  g_autofree char *raw_256 = g_strnfill (256, 'i');
  g_autofree char *long_identifier = g_strdup_printf ("\"%s\"", raw_256);
  g_autofree char *raw_65 = g_strnfill (65, 'd');
  g_autofree char *base64_65 = g_base64_encode ((const guchar *) raw_65, 65);
  g_autofree char *long_delimiter = g_strdup_printf ("\"%s\"", base64_65);
  const char * const cases[][3] = {
    { "port", "0", "server 2: 'port' must be an integer from 1 to 65535" },
    { "port", "65536", "server 2: 'port' must be an integer from 1 to 65535" },
    { "port", "-1", "'port'" },
    { "port", "99999999999999999999999", "integer too large" },
    { "port", "\"5000\"", "'port'" },
    { "port", "5000.0", "'port'" },
    { "port", "true", "'port'" },
    { "port", "null", "'port'" },
    { "port", "[5000]", "'port'" },
    { "port", "{}", "'port'" },
    { "udp", "0", "server 2: 'udp' must be true or false" },
    { "udp", "\"false\"", "'udp'" },
    { "udp", "null", "'udp'" },
    { "identifier", "5", "server 2: 'identifier' must be a string" },
    { "identifier", "null", "'identifier'" },
    { "identifier", "[\"x\"]", "'identifier'" },
    { "identifier", long_identifier, "server 2: 'identifier' is 256 bytes; at most 255" },
    { "identifier", "\"\\ud800\"", "unpaired surrogate" },
    { "identifier", "\"\\ud800\\u0041\"", "unpaired surrogate" },
    { "identifier", "\"\\udc00\\ud800\"", "unpaired surrogate" },
    { "identifier", "\"a\\u0000b\"", "\\u0000" },
    { "port", "18446744073709556616", "integer too large" },
    { "port", "-18446744073709546616", "integer too large" },
    { "port", "5e3", "'port'" },
    { "delimiter", "5", "'delimiter'" },
    { "delimiter", "null", "'delimiter'" },
    { "delimiter", "\"!!!!\"", "server 2: 'delimiter' must be the base64" },
    { "delimiter", "\"DQo\"", "'delimiter'" },
    { "delimiter", "\"DQp=\"", "'delimiter'" },
    { "delimiter", "\"DQo=DQo=\"", "'delimiter'" },
    { "delimiter", "\" DQo=\"", "'delimiter'" },
    { "delimiter", "\"DQo=\\n\"", "'delimiter'" },
    { "delimiter", "\"=\"", "'delimiter'" },
    { "delimiter", long_delimiter, "'delimiter'" },
    { "bind-address", "\"localhost\"", "server 2: 'bind-address' must be a numeric" },
    { "bind-address", "\"\"", "'bind-address'" },
    { "bind-address", "\"1.2.3.256\"", "'bind-address'" },
    { "bind-address", "null", "'bind-address'" },
    { "bind-address", "6", "'bind-address'" },
    { "flush-timeout-ms", "-1", "'flush-timeout-ms' must be an integer from 0 to 4294967295" },
    { "flush-timeout-ms", "4294967296", "'flush-timeout-ms'" },
    { "flush-timeout-ms", "\"1000\"", "'flush-timeout-ms'" },
    { "max-message-bytes", "0", "'max-message-bytes' must be an integer from 1 to 16777216" },
    { "max-message-bytes", "16777217", "'max-message-bytes'" },
    { "max-message-bytes", "1e3", "'max-message-bytes'" },
    { "max-connections", "0", "'max-connections' must be an integer from 1 to 65536" },
    { "max-connections", "65537", "'max-connections'" },
    { "udp-peer-timeout-ms", "-5", "'udp-peer-timeout-ms'" },
    { "udp-peer-timeout-ms", "4294967296", "'udp-peer-timeout-ms'" },
    { "owner-uid", "-1", "'owner-uid'" },
    { "owner-uid", "4294967296", "'owner-uid'" },
    { "owner-uid", "false", "'owner-uid'" },
    { "batch", "1", "server 2: 'batch' must be true or false" },
    { "batch", "\"true\"", "'batch'" },
    { "batch", "null", "'batch'" },
    { "strip-delimiter", "1", "server 2: 'strip-delimiter' must be true or false" },
    { "strip-delimiter", "\"true\"", "'strip-delimiter'" },
    { "strip-delimiter", "null", "'strip-delimiter'" },
    { "strip-delimiter", "[true]", "'strip-delimiter'" },
    { "allow-from", "\"10.0.0.1\"", "server 2: 'allow-from' must be an array of strings" },
    { "allow-from", "[1]", "server 2: 'allow-from' must be an array of strings" },
    { "allow-from", "[\"::1\", null]", "'allow-from' must be an array of strings" },
    { "allow-from", "[[\"::1\"]]", "'allow-from' must be an array of strings" },
    { "allow-from", "null", "'allow-from'" },
    { "allow-from", "{}", "'allow-from'" },
    { "allow-from", "[\"localhost\"]", "server 2: allow-from entry 'localhost' is not a numeric" },
    { "allow-from", "[\"10.0.0.1/8\"]", "server 2: allow-from entry '10.0.0.1/8' has bits set" },
    { "exit-with-caller", "true", "server 2: unknown member 'exit-with-caller'" },
    { "Port", "5000", "server 2: unknown member 'Port'" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *document = document_with_member (cases[i][0], cases[i][1]);

    g_test_message ("%s", document);
    assert_invalid (document, strlen (document), cases[i][2]);
  }
}

/* A file cut short by a crash: every prefix is refused, bar the ones that
 * only lack trailing whitespace. The prefix is copied to a buffer of its
 * own size so that ASan sees any read past its end. */
static void
test_every_prefix (void)
{
  g_autoptr(GPtrArray) configs = new_configs ();
  gsize len;
  g_autofree char *text = sb_state_serialize (configs, &len);

  for (gsize i = 0; i < len; i++) {
    g_autofree char *prefix = g_memdup2 (text, i);
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) parsed = sb_state_parse (prefix, i, &error);

    if (i < len - 1) {
      g_assert_null (parsed);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    } else {
      g_assert_no_error (error);
      assert_same_configs (configs, parsed);
    }
  }
}

/* A poor man's fuzzer: every byte of a valid file replaced by bytes that
 * matter to a JSON parser. Any outcome is fine but a crash, a critical or
 * an error of another kind. */
static void
test_mutations (void)
{
  static const char replacements[] = "\0\"{}[],:0-9ex\\ .\xff\xc3\n";
  g_autoptr(GPtrArray) configs = new_configs ();
  g_autofree char *text = NULL;
  gsize len;

  /* Without the long identifier: it adds time, not cases. */
  g_ptr_array_remove_index (configs, 2);
  text = sb_state_serialize (configs, &len);

  for (gsize i = 0; i < len; i++) {
    for (gsize r = 0; r < sizeof replacements - 1; r++) {
      g_autofree char *mutant = g_memdup2 (text, len);
      g_autoptr(GError) error = NULL;
      g_autoptr(GPtrArray) parsed = NULL;

      mutant[i] = replacements[r];
      parsed = sb_state_parse (mutant, len, &error);
      g_assert_true ((parsed == NULL) != (error == NULL));
      if (error != NULL)
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    }
  }
}

typedef struct
{
  char *dir;
  char *path;
  char *corrupt;
} Fixture;

static void
fixture_set_up (Fixture       *fixture,
                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  fixture->dir = g_dir_make_tmp ("test-state-XXXXXX", &error);
  g_assert_no_error (error);
  fixture->path = g_build_filename (fixture->dir, "state.json", NULL);
  fixture->corrupt = g_build_filename (fixture->dir, "state.json.corrupt", NULL);
}

static void
remove_tree (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir != NULL) {
    while ((name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *child = g_build_filename (path, name, NULL);

      remove_tree (child);
    }
  }
  g_assert_cmpint (g_remove (path), ==, 0);
}

static void
fixture_tear_down (Fixture       *fixture,
                   gconstpointer  data)
{
  remove_tree (fixture->dir);
  g_free (fixture->dir);
  g_free (fixture->path);
  g_free (fixture->corrupt);
}

static void
write_file (const char *path,
            const char *data,
            gsize       len)
{
  g_autoptr(GError) error = NULL;

  g_file_set_contents (path, data, (gssize) len, &error);
  g_assert_no_error (error);
}

static void
assert_file_contents (const char *path,
                      const char *expected,
                      gsize       expected_len)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *data = NULL;
  gsize len;

  g_file_get_contents (path, &data, &len, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (data, len, expected, expected_len);
}

/* Loads @path expecting one warning that names it, its .corrupt twin and
 * @reason, and nothing back. */
static void
load_corrupt (Fixture    *fixture,
              const char *reason)
{
  g_autofree char *pattern = g_strdup_printf ("*%s*%s*%s*", fixture->path, reason,
                                              fixture->corrupt);
  g_autoptr(GPtrArray) configs = NULL;

  g_test_expect_message (G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, pattern);
  configs = sb_state_load (fixture->path);
  g_test_assert_expected_messages ();
  g_assert_nonnull (configs);
  g_assert_cmpuint (configs->len, ==, 0);
  g_assert_false (g_file_test (fixture->path, G_FILE_TEST_EXISTS));
}

static void
test_load_missing (Fixture       *fixture,
                   gconstpointer  data)
{
  g_autoptr(GPtrArray) configs = sb_state_load (fixture->path);

  g_assert_nonnull (configs);
  g_assert_cmpuint (configs->len, ==, 0);
  g_assert_false (g_file_test (fixture->corrupt, G_FILE_TEST_EXISTS));
}

static void
test_load_saved (Fixture       *fixture,
                 gconstpointer  data)
{
  g_autoptr(GPtrArray) configs = new_configs ();
  g_autoptr(GPtrArray) loaded = NULL;
  g_autoptr(GError) error = NULL;

  sb_state_save (fixture->path, configs, &error);
  g_assert_no_error (error);
  loaded = sb_state_load (fixture->path);
  assert_same_configs (configs, loaded);
}

static void
test_load_corrupt (Fixture       *fixture,
                   gconstpointer  data)
{
  static const char garbage[] = "not json\n";
  static const char wrong[] = "{\"version\": 1, \"servers\": [{\"port\": 0}]}";

  write_file (fixture->path, garbage, sizeof garbage - 1);
  load_corrupt (fixture, "not valid JSON");
  assert_file_contents (fixture->corrupt, garbage, sizeof garbage - 1);

  /* A second bad file replaces the first one aside. */
  write_file (fixture->path, wrong, sizeof wrong - 1);
  load_corrupt (fixture, "server 1: 'port'");
  assert_file_contents (fixture->corrupt, wrong, sizeof wrong - 1);
}

static void
test_load_truncated (Fixture       *fixture,
                     gconstpointer  data)
{
  g_autoptr(GPtrArray) configs = new_configs ();
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  gsize len;

  sb_state_save (fixture->path, configs, &error);
  g_assert_no_error (error);
  text = sb_state_serialize (configs, &len);
  g_assert_cmpint (truncate (fixture->path, (off_t) len / 2), ==, 0);

  load_corrupt (fixture, "not valid JSON");
  assert_file_contents (fixture->corrupt, text, len / 2);
}

static void
test_load_empty_file (Fixture       *fixture,
                      gconstpointer  data)
{
  write_file (fixture->path, "", 0);
  load_corrupt (fixture, "");
  assert_file_contents (fixture->corrupt, "", 0);
}

/* Root reads any file, so a directory stands for what cannot be read. */
static void
test_load_unreadable (Fixture       *fixture,
                      gconstpointer  data)
{
  g_assert_cmpint (g_mkdir (fixture->path, 0700), ==, 0);
  load_corrupt (fixture, "");
  g_assert_true (g_file_test (fixture->corrupt, G_FILE_TEST_IS_DIR));
}

static void
assert_mode (const char *path,
             guint       mode)
{
  GStatBuf buf;

  g_assert_cmpint (g_stat (path, &buf), ==, 0);
  g_assert_cmpuint (buf.st_mode & 07777, ==, mode);
}

static void
assert_only_file (const char *dir_path,
                  const char *name)
{
  g_autoptr(GDir) dir = g_dir_open (dir_path, 0, NULL);

  g_assert_nonnull (dir);
  g_assert_cmpstr (g_dir_read_name (dir), ==, name);
  g_assert_null (g_dir_read_name (dir));
}

static void
test_save_creates_directory (Fixture       *fixture,
                             gconstpointer  data)
{
  g_autofree char *parent = g_build_filename (fixture->dir, "a", "b", NULL);
  g_autofree char *path = g_build_filename (parent, "state.json", NULL);
  g_autoptr(GPtrArray) configs = new_configs ();
  g_autoptr(GError) error = NULL;
  g_autofree char *expected = sb_state_serialize (configs, NULL);

  g_assert_true (sb_state_save (path, configs, &error));
  g_assert_no_error (error);
  assert_mode (parent, 0700);
  assert_mode (path, 0600);
  assert_file_contents (path, expected, strlen (expected));
  assert_only_file (parent, "state.json");
}

static void
test_save_replaces_atomically (Fixture       *fixture,
                               gconstpointer  data)
{
  g_autoptr(GPtrArray) configs = new_configs ();
  g_autoptr(GError) error = NULL;
  g_autofree char *expected = sb_state_serialize (configs, NULL);
  GStatBuf before, after;

  write_file (fixture->path, "old", 3);
  g_assert_cmpint (g_chmod (fixture->path, 0644), ==, 0);
  g_assert_cmpint (g_stat (fixture->path, &before), ==, 0);

  g_assert_true (sb_state_save (fixture->path, configs, &error));
  g_assert_no_error (error);

  /* A new inode renamed over the old one, never the old file rewritten
   * in place; and no temporary file left behind. */
  g_assert_cmpint (g_stat (fixture->path, &after), ==, 0);
  g_assert_cmpuint (before.st_ino, !=, after.st_ino);
  assert_mode (fixture->path, 0600);
  assert_file_contents (fixture->path, expected, strlen (expected));
  assert_only_file (fixture->dir, "state.json");
}

/* The mode is 0600 whatever the old file's mode and the umask: GLib 2.84
 * would keep the old 0644, and a umask such as 0277 would make GLib's
 * 0600 a 0400. */
static void
test_save_ignores_umask_and_old_mode (Fixture       *fixture,
                                      gconstpointer  data)
{
  static const mode_t umasks[] = { 0277, 0077, 0022, 0 };
  g_autoptr(GPtrArray) configs = new_configs ();

  for (gsize i = 0; i < G_N_ELEMENTS (umasks); i++) {
    g_autoptr(GError) error = NULL;
    mode_t old_umask;
    gboolean saved;

    write_file (fixture->path, "old", 3);
    g_assert_cmpint (g_chmod (fixture->path, 0644), ==, 0);
    old_umask = umask (umasks[i]);
    saved = sb_state_save (fixture->path, configs, &error);
    umask (old_umask);
    g_assert_no_error (error);
    g_assert_true (saved);
    assert_mode (fixture->path, 0600);
    assert_only_file (fixture->dir, "state.json");
  }
}

/* A directory in the file's place: the rename fails, and the temporary
 * file goes with it. */
static void
test_save_fails_without_leftovers (Fixture       *fixture,
                                   gconstpointer  data)
{
  g_autofree char *inside = g_build_filename (fixture->path, "keep", NULL);
  g_autoptr(GPtrArray) configs = new_configs ();
  g_autoptr(GError) error = NULL;

  g_assert_cmpint (g_mkdir (fixture->path, 0700), ==, 0);
  write_file (inside, "", 0);
  g_assert_false (sb_state_save (fixture->path, configs, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, fixture->path));
  assert_only_file (fixture->dir, "state.json");
}

static void
test_save_fails (Fixture       *fixture,
                 gconstpointer  data)
{
  g_autofree char *blocker = g_build_filename (fixture->dir, "file", NULL);
  g_autofree char *path = g_build_filename (blocker, "sub", "state.json", NULL);
  g_autoptr(GPtrArray) configs = new_configs ();
  g_autoptr(GError) error = NULL;

  write_file (blocker, "", 0);
  g_assert_false (sb_state_save (path, configs, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, blocker));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/state/round-trip", test_round_trip);
  g_test_add_func ("/state/round-trip-empty", test_round_trip_empty);
  g_test_add_func ("/state/documented-format", test_documented_format);
  g_test_add_func ("/state/written-format", test_written_format);
  g_test_add_func ("/state/exit-with-caller-not-written", test_exit_with_caller_not_written);
  g_test_add_func ("/state/invalid/documents", test_invalid_documents);
  g_test_add_func ("/state/invalid/bytes", test_invalid_bytes);
  g_test_add_func ("/state/invalid/template-is-valid", test_valid_member_template);
  g_test_add_func ("/state/option-members", test_option_members);
  g_test_add_func ("/state/allow-from", test_allow_from_member);
  g_test_add_func ("/state/multicast", test_multicast_members);
  g_test_add_func ("/state/valid-fuzz-seeds", test_valid_seeds);
  g_test_add_func ("/state/json-glib/misreads", test_json_glib_misreads);
  g_test_add_func ("/state/json-glib/second-value", test_json_glib_second_value);
  g_test_add_func ("/state/json-glib/deep-nesting", test_json_glib_deep_nesting);
  g_test_add_func ("/state/invalid/string-escapes", test_string_escapes);
  g_test_add_func ("/state/invalid/missing-members", test_missing_members);
  g_test_add_func ("/state/invalid/members", test_invalid_members);
  g_test_add_func ("/state/invalid/every-prefix", test_every_prefix);
  g_test_add_func ("/state/invalid/mutations", test_mutations);

#define ADD_FILE_TEST(name, func) \
  g_test_add (name, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
  ADD_FILE_TEST ("/state/load/missing", test_load_missing);
  ADD_FILE_TEST ("/state/load/saved", test_load_saved);
  ADD_FILE_TEST ("/state/load/corrupt", test_load_corrupt);
  ADD_FILE_TEST ("/state/load/truncated", test_load_truncated);
  ADD_FILE_TEST ("/state/load/empty-file", test_load_empty_file);
  ADD_FILE_TEST ("/state/load/unreadable", test_load_unreadable);
  ADD_FILE_TEST ("/state/save/creates-directory", test_save_creates_directory);
  ADD_FILE_TEST ("/state/save/replaces-atomically", test_save_replaces_atomically);
  ADD_FILE_TEST ("/state/save/ignores-umask-and-old-mode", test_save_ignores_umask_and_old_mode);
  ADD_FILE_TEST ("/state/save/fails", test_save_fails);
  ADD_FILE_TEST ("/state/save/fails-without-leftovers", test_save_fails_without_leftovers);
#undef ADD_FILE_TEST

  return g_test_run ();
}
