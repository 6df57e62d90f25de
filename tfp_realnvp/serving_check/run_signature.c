/*
 * run_signature: run one signature of a SavedModel through TensorFlow's C++
 * SavedModel loader (the loader TF Serving uses), via the C API.
 *
 * Usage: run_signature EXPORT_DIR SIGNATURE_KEY [REPEATS] < request
 *
 * The loader is TF_LoadSessionFromSavedModel with the single tag "serve".
 * The signature's input and output tensor names (e.g. "serving_default_x:0")
 * are read here from the signature_def map of the MetaGraphDef the loader
 * returns, exactly as a model server resolves them, so the caller speaks only
 * in signature keys.
 *
 * Request (stdin), whitespace-separated tokens, any number of records:
 *   input KEY DTYPE NDIM DIM_1 ... DIM_NDIM VALUE_1 ... VALUE_N
 *   output KEY
 * DTYPE is one of float32, float64, int32, int64, bool (values 0/1); N is the
 * product of the dims (1 for NDIM 0, a scalar). Floats are read with strtod,
 * so "nan", "inf" and "-inf" are accepted. Every signature input must be fed
 * exactly once. With no "output" record, every signature output is fetched.
 *
 * Response (stdout), one record per fetched output, in request order (or in
 * signature order when all outputs are fetched):
 *   output KEY DTYPE NDIM DIM_1 ... DIM_NDIM
 *   VALUE_1 ... VALUE_N
 * Floats are printed with "%.17g" of the value widened to double, which
 * reads back bit-exactly for float32 and float64.
 *
 * With REPEATS (a positive integer), the signature runs that many times more after the
 * first run (whose outputs are printed), each TF_SessionRun timed on its own, and one more
 * record follows the outputs, the durations in nanoseconds (CLOCK_MONOTONIC):
 *   timings REPEATS
 *   T_1 ... T_REPEATS
 * This is the latency a model server adds nothing to but its RPC layer.
 *
 * Errors go to stderr as one line starting "run_signature: error: ", followed
 * by the TF_Status message where TensorFlow reported one. Exit status: 0 on
 * success, 1 when TensorFlow fails (load, missing op, run), 2 for a bad
 * command line, request or signature.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c11 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tensorflow/c/c_api.h"

#define EXIT_TF_FAILURE 1
#define EXIT_BAD_REQUEST 2
#define MAX_TOKEN 4096
#define MAX_DIMS 32

static void die(int code, const char *fmt, ...) {
  va_list args;
  fputs("run_signature: error: ", stderr);
  va_start(args, fmt);
  vfprintf(stderr, fmt, args);
  va_end(args);
  fputc('\n', stderr);
  exit(code);
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (p == NULL) die(EXIT_TF_FAILURE, "out of memory");
  return p;
}

static char *xstrndup(const char *s, size_t n) {
  char *out = xcalloc(n + 1, 1);
  memcpy(out, s, n);
  return out;
}

/* ---- Minimal protobuf wire-format reader for the signature_def map. ---- */

typedef struct {
  const uint8_t *p;
  const uint8_t *end;
} Slice;

static int read_varint(Slice *s, uint64_t *out) {
  uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (s->p >= s->end) return 0;
    uint8_t byte = *s->p++;
    value |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      *out = value;
      return 1;
    }
  }
  return 0;
}

/* Reads the next field: its number, wire type and, for wire type 2, its bytes.
 * Other wire types are skipped over. Returns 0 at the end of the message and
 * exits on malformed input. */
static int next_field(Slice *s, uint32_t *field, uint32_t *wire, Slice *bytes,
                      uint64_t *varint) {
  uint64_t key, len;
  if (s->p >= s->end) return 0;
  if (!read_varint(s, &key)) goto bad;
  *field = (uint32_t)(key >> 3);
  *wire = (uint32_t)(key & 7);
  switch (*wire) {
    case 0:
      if (!read_varint(s, varint)) goto bad;
      return 1;
    case 1:
      if (s->end - s->p < 8) goto bad;
      s->p += 8;
      return 1;
    case 2:
      if (!read_varint(s, &len) || (uint64_t)(s->end - s->p) < len) goto bad;
      bytes->p = s->p;
      bytes->end = s->p + len;
      s->p += len;
      return 1;
    case 5:
      if (s->end - s->p < 4) goto bad;
      s->p += 4;
      return 1;
    default:
      goto bad;
  }
bad:
  die(EXIT_BAD_REQUEST, "malformed MetaGraphDef returned by the loader");
  return 0;
}

static int slice_equals(Slice s, const char *str) {
  size_t n = strlen(str);
  return (size_t)(s.end - s.p) == n && memcmp(s.p, str, n) == 0;
}

typedef struct {
  char *key;
  char *tensor_name; /* NULL for sparse or composite tensors */
  int dtype;         /* DataType enum value, equal to TF_DataType */
} TensorInfo;

typedef struct {
  TensorInfo *items;
  int count;
} TensorInfoList;

/* Parses one map<string, TensorInfo> entry (TensorInfo: name = 1, dtype = 2). */
static void parse_tensor_info_entry(Slice entry, TensorInfoList *list) {
  uint32_t field, wire;
  uint64_t varint = 0;
  Slice bytes = {0}, value = {0};
  TensorInfo info = {0};
  int has_value = 0;
  while (next_field(&entry, &field, &wire, &bytes, &varint)) {
    if (field == 1 && wire == 2) {
      info.key = xstrndup((const char *)bytes.p, (size_t)(bytes.end - bytes.p));
    } else if (field == 2 && wire == 2) {
      value = bytes;
      has_value = 1;
    }
  }
  if (info.key == NULL) info.key = xstrndup("", 0);
  while (has_value && next_field(&value, &field, &wire, &bytes, &varint)) {
    if (field == 1 && wire == 2) {
      info.tensor_name =
          xstrndup((const char *)bytes.p, (size_t)(bytes.end - bytes.p));
    } else if (field == 2 && wire == 0) {
      info.dtype = (int)varint;
    }
  }
  list->items = realloc(list->items, sizeof(TensorInfo) * (list->count + 1));
  if (list->items == NULL) die(EXIT_TF_FAILURE, "out of memory");
  list->items[list->count++] = info;
}

/* Finds signature_def[key] (MetaGraphDef field 5) and its inputs (field 1) and
 * outputs (field 2). Returns 0 when the key is absent, leaving in `available`
 * a comma-separated list of the keys present. */
static int find_signature(const TF_Buffer *meta_graph_def, const char *key,
                          TensorInfoList *inputs, TensorInfoList *outputs,
                          char *available, size_t available_size) {
  Slice meta = {meta_graph_def->data,
                (const uint8_t *)meta_graph_def->data + meta_graph_def->length};
  uint32_t field, wire;
  uint64_t varint = 0;
  Slice bytes = {0};
  available[0] = '\0';
  while (next_field(&meta, &field, &wire, &bytes, &varint)) {
    if (field != 5 || wire != 2) continue;
    Slice entry = bytes, name = {0}, signature = {0};
    Slice inner = {0};
    while (next_field(&entry, &field, &wire, &inner, &varint)) {
      if (field == 1 && wire == 2) name = inner;
      if (field == 2 && wire == 2) signature = inner;
    }
    if (!slice_equals(name, key)) {
      size_t used = strlen(available);
      snprintf(available + used, available_size - used, "%s'%.*s'",
               used ? ", " : "", (int)(name.end - name.p),
               (const char *)name.p);
      continue;
    }
    while (next_field(&signature, &field, &wire, &inner, &varint)) {
      if (field == 1 && wire == 2) parse_tensor_info_entry(inner, inputs);
      if (field == 2 && wire == 2) parse_tensor_info_entry(inner, outputs);
    }
    return 1;
  }
  return 0;
}

static const TensorInfo *find_info(const TensorInfoList *list,
                                   const char *key) {
  for (int i = 0; i < list->count; ++i) {
    if (strcmp(list->items[i].key, key) == 0) return &list->items[i];
  }
  return NULL;
}

/* ---- dtypes ---- */

static const struct {
  const char *name;
  TF_DataType dtype;
} kDtypes[] = {
    {"float32", TF_FLOAT}, {"float64", TF_DOUBLE}, {"int32", TF_INT32},
    {"int64", TF_INT64},   {"bool", TF_BOOL},
};

static int dtype_from_name(const char *name, TF_DataType *out) {
  for (size_t i = 0; i < sizeof(kDtypes) / sizeof(kDtypes[0]); ++i) {
    if (strcmp(kDtypes[i].name, name) == 0) {
      *out = kDtypes[i].dtype;
      return 1;
    }
  }
  return 0;
}

static const char *dtype_name(int dtype) {
  for (size_t i = 0; i < sizeof(kDtypes) / sizeof(kDtypes[0]); ++i) {
    if ((int)kDtypes[i].dtype == dtype) return kDtypes[i].name;
  }
  return NULL;
}

/* ---- request parsing ---- */

typedef struct {
  char *key;
  TF_Tensor *tensor;
} Feed;

static int read_token(char *buf) {
  int c;
  size_t n = 0;
  do {
    c = getchar();
  } while (c == ' ' || c == '\n' || c == '\t' || c == '\r');
  if (c == EOF) return 0;
  while (c != EOF && c != ' ' && c != '\n' && c != '\t' && c != '\r') {
    if (n + 1 >= MAX_TOKEN) die(EXIT_BAD_REQUEST, "request token too long");
    buf[n++] = (char)c;
    c = getchar();
  }
  buf[n] = '\0';
  return 1;
}

static void expect_token(char *buf, const char *what) {
  if (!read_token(buf)) die(EXIT_BAD_REQUEST, "request ended before %s", what);
}

static long long parse_integer(const char *token, const char *what) {
  char *end;
  errno = 0;
  long long value = strtoll(token, &end, 10);
  if (errno || *end != '\0' || end == token) {
    die(EXIT_BAD_REQUEST, "%s: expected an integer, got '%s'", what, token);
  }
  return value;
}

static TF_Tensor *read_tensor(const char *key, char *buf) {
  TF_DataType dtype;
  int64_t dims[MAX_DIMS];
  expect_token(buf, "a dtype");
  if (!dtype_from_name(buf, &dtype)) {
    die(EXIT_BAD_REQUEST,
        "input '%s': dtype '%s' is not one of float32, float64, int32, "
        "int64, bool",
        key, buf);
  }
  expect_token(buf, "a rank");
  long long ndim = parse_integer(buf, "rank");
  if (ndim < 0 || ndim > MAX_DIMS) {
    die(EXIT_BAD_REQUEST, "input '%s': rank %lld is not in [0, %d]", key, ndim,
        MAX_DIMS);
  }
  int64_t count = 1;
  for (int i = 0; i < ndim; ++i) {
    expect_token(buf, "a dimension");
    dims[i] = parse_integer(buf, "dimension");
    if (dims[i] < 0) {
      die(EXIT_BAD_REQUEST, "input '%s': dimension %" PRId64 " is negative",
          key, dims[i]);
    }
    count *= dims[i];
  }
  size_t width = TF_DataTypeSize(dtype);
  TF_Tensor *tensor =
      TF_AllocateTensor(dtype, dims, (int)ndim, (size_t)count * width);
  if (tensor == NULL) die(EXIT_TF_FAILURE, "could not allocate input '%s'", key);
  char *data = TF_TensorData(tensor);
  for (int64_t i = 0; i < count; ++i) {
    expect_token(buf, "a value");
    char *end;
    errno = 0;
    if (dtype == TF_FLOAT || dtype == TF_DOUBLE) {
      double value = strtod(buf, &end);
      if (*end != '\0' || end == buf) {
        die(EXIT_BAD_REQUEST, "input '%s': '%s' is not a number", key, buf);
      }
      if (dtype == TF_FLOAT) {
        ((float *)data)[i] = (float)value;
      } else {
        ((double *)data)[i] = value;
      }
    } else {
      long long value = parse_integer(buf, "value");
      if (dtype == TF_INT32) {
        if (value < INT32_MIN || value > INT32_MAX) {
          die(EXIT_BAD_REQUEST, "input '%s': %lld overflows int32", key, value);
        }
        ((int32_t *)data)[i] = (int32_t)value;
      } else if (dtype == TF_INT64) {
        ((int64_t *)data)[i] = (int64_t)value;
      } else {
        if (value != 0 && value != 1) {
          die(EXIT_BAD_REQUEST, "input '%s': bool value %lld is not 0 or 1",
              key, value);
        }
        ((uint8_t *)data)[i] = (uint8_t)value;
      }
    }
  }
  return tensor;
}

/* ---- graph lookup and output ---- */

/* Maps "op_name:index" (index 0 when absent) to a TF_Output. */
static TF_Output graph_output(TF_Graph *graph, const char *tensor_name,
                              const char *role, const char *key) {
  const char *colon = strrchr(tensor_name, ':');
  size_t op_len = colon ? (size_t)(colon - tensor_name) : strlen(tensor_name);
  char *op_name = xstrndup(tensor_name, op_len);
  int index = colon ? (int)parse_integer(colon + 1, "tensor index") : 0;
  TF_Output out = {TF_GraphOperationByName(graph, op_name), index};
  if (out.oper == NULL) {
    die(EXIT_TF_FAILURE, "%s '%s': operation '%s' not found in the graph", role,
        key, op_name);
  }
  if (index < 0 || index >= TF_OperationNumOutputs(out.oper)) {
    die(EXIT_TF_FAILURE, "%s '%s': operation '%s' has no output %d", role, key,
        op_name, index);
  }
  free(op_name);
  return out;
}

static void print_tensor(const char *key, const TF_Tensor *tensor) {
  TF_DataType dtype = TF_TensorType(tensor);
  const char *name = dtype_name((int)dtype);
  if (name == NULL) {
    die(EXIT_BAD_REQUEST, "output '%s': unsupported dtype (DataType %d)", key,
        (int)dtype);
  }
  int ndim = TF_NumDims(tensor);
  int64_t count = TF_TensorElementCount(tensor);
  printf("output %s %s %d", key, name, ndim);
  for (int i = 0; i < ndim; ++i) printf(" %" PRId64, TF_Dim(tensor, i));
  putchar('\n');
  const void *data = TF_TensorData(tensor);
  for (int64_t i = 0; i < count; ++i) {
    if (i) putchar(' ');
    switch (dtype) {
      case TF_FLOAT:
        printf("%.17g", (double)((const float *)data)[i]);
        break;
      case TF_DOUBLE:
        printf("%.17g", ((const double *)data)[i]);
        break;
      case TF_INT32:
        printf("%" PRId32, ((const int32_t *)data)[i]);
        break;
      case TF_INT64:
        printf("%" PRId64, ((const int64_t *)data)[i]);
        break;
      default:
        printf("%d", ((const uint8_t *)data)[i] ? 1 : 0);
        break;
    }
  }
  putchar('\n');
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    die(EXIT_BAD_REQUEST, "usage: %s EXPORT_DIR SIGNATURE_KEY [REPEATS] < request",
        argc ? argv[0] : "run_signature");
  }
  const char *export_dir = argv[1];
  const char *signature_key = argv[2];
  long long repeats = argc == 4 ? parse_integer(argv[3], "REPEATS") : 0;
  if (repeats < 0) die(EXIT_BAD_REQUEST, "REPEATS must be >= 0, got %lld", repeats);

  /* Read the whole request before loading, so request errors are cheap. */
  static char buf[MAX_TOKEN];
  Feed *feeds = NULL;
  char **fetch_keys = NULL;
  int num_feeds = 0, num_fetches = 0;
  while (read_token(buf)) {
    if (strcmp(buf, "input") == 0) {
      expect_token(buf, "an input key");
      feeds = realloc(feeds, sizeof(Feed) * (num_feeds + 1));
      if (feeds == NULL) die(EXIT_TF_FAILURE, "out of memory");
      feeds[num_feeds].key = xstrndup(buf, strlen(buf));
      feeds[num_feeds].tensor = read_tensor(feeds[num_feeds].key, buf);
      ++num_feeds;
    } else if (strcmp(buf, "output") == 0) {
      expect_token(buf, "an output key");
      fetch_keys = realloc(fetch_keys, sizeof(char *) * (num_fetches + 1));
      if (fetch_keys == NULL) die(EXIT_TF_FAILURE, "out of memory");
      fetch_keys[num_fetches++] = xstrndup(buf, strlen(buf));
    } else {
      die(EXIT_BAD_REQUEST, "request record '%s' is not 'input' or 'output'",
          buf);
    }
  }

  TF_Status *status = TF_NewStatus();
  /* Default options, but not NULL: TF 2.21's loader dereferences them (a NULL
   * here is a segmentation fault). run_options may be NULL. */
  TF_SessionOptions *session_options = TF_NewSessionOptions();
  TF_Graph *graph = TF_NewGraph();
  TF_Buffer *meta_graph_def = TF_NewBuffer();
  const char *tags[] = {"serve"};
  TF_Session *session =
      TF_LoadSessionFromSavedModel(session_options, NULL, export_dir, tags, 1,
                                   graph, meta_graph_def, status);
  if (TF_GetCode(status) != TF_OK) {
    die(EXIT_TF_FAILURE, "loading SavedModel '%s' with tag 'serve' failed: %s",
        export_dir, TF_Message(status));
  }

  TensorInfoList inputs = {0}, outputs = {0};
  static char available[8192];
  if (!find_signature(meta_graph_def, signature_key, &inputs, &outputs,
                      available, sizeof(available))) {
    die(EXIT_BAD_REQUEST, "signature '%s' not found; the SavedModel has [%s]",
        signature_key, available);
  }

  TF_Output *input_ops = xcalloc((size_t)num_feeds, sizeof(TF_Output));
  TF_Tensor **input_values = xcalloc((size_t)num_feeds, sizeof(TF_Tensor *));
  for (int i = 0; i < num_feeds; ++i) {
    const TensorInfo *info = find_info(&inputs, feeds[i].key);
    if (info == NULL) {
      die(EXIT_BAD_REQUEST, "'%s' is not an input of signature '%s'",
          feeds[i].key, signature_key);
    }
    for (int j = 0; j < i; ++j) {
      if (strcmp(feeds[j].key, feeds[i].key) == 0) {
        die(EXIT_BAD_REQUEST, "input '%s' is fed twice", feeds[i].key);
      }
    }
    if (info->tensor_name == NULL) {
      die(EXIT_BAD_REQUEST, "input '%s' is not a dense tensor", info->key);
    }
    TF_DataType fed = TF_TensorType(feeds[i].tensor);
    if ((int)fed != info->dtype) {
      const char *expected = dtype_name(info->dtype);
      die(EXIT_BAD_REQUEST,
          "input '%s' has dtype %s but signature '%s' expects %s (DataType "
          "%d)",
          info->key, dtype_name((int)fed), signature_key,
          expected ? expected : "an unsupported dtype", info->dtype);
    }
    input_ops[i] = graph_output(graph, info->tensor_name, "input", info->key);
    input_values[i] = feeds[i].tensor;
  }
  for (int i = 0; i < inputs.count; ++i) {
    int fed = 0;
    for (int j = 0; j < num_feeds; ++j) {
      fed |= strcmp(feeds[j].key, inputs.items[i].key) == 0;
    }
    if (!fed) {
      die(EXIT_BAD_REQUEST, "input '%s' of signature '%s' is not fed",
          inputs.items[i].key, signature_key);
    }
  }

  if (num_fetches == 0) {
    num_fetches = outputs.count;
    fetch_keys = xcalloc((size_t)num_fetches, sizeof(char *));
    for (int i = 0; i < num_fetches; ++i) fetch_keys[i] = outputs.items[i].key;
  }
  TF_Output *output_ops = xcalloc((size_t)num_fetches, sizeof(TF_Output));
  TF_Tensor **output_values = xcalloc((size_t)num_fetches, sizeof(TF_Tensor *));
  for (int i = 0; i < num_fetches; ++i) {
    const TensorInfo *info = find_info(&outputs, fetch_keys[i]);
    if (info == NULL) {
      die(EXIT_BAD_REQUEST, "'%s' is not an output of signature '%s'",
          fetch_keys[i], signature_key);
    }
    if (info->tensor_name == NULL) {
      die(EXIT_BAD_REQUEST, "output '%s' is not a dense tensor", info->key);
    }
    output_ops[i] = graph_output(graph, info->tensor_name, "output", info->key);
  }

  TF_SessionRun(session, NULL, input_ops, input_values, num_feeds, output_ops,
                output_values, num_fetches, NULL, 0, NULL, status);
  if (TF_GetCode(status) != TF_OK) {
    die(EXIT_TF_FAILURE, "running signature '%s' failed: %s", signature_key,
        TF_Message(status));
  }
  for (int i = 0; i < num_fetches; ++i) {
    print_tensor(fetch_keys[i], output_values[i]);
    TF_DeleteTensor(output_values[i]);
  }
  if (repeats > 0) {
    long long *nanoseconds = xcalloc((size_t)repeats, sizeof(long long));
    for (long long r = 0; r < repeats; ++r) {
      struct timespec start, stop;
      clock_gettime(CLOCK_MONOTONIC, &start);
      TF_SessionRun(session, NULL, input_ops, input_values, num_feeds,
                    output_ops, output_values, num_fetches, NULL, 0, NULL,
                    status);
      clock_gettime(CLOCK_MONOTONIC, &stop);
      if (TF_GetCode(status) != TF_OK) {
        die(EXIT_TF_FAILURE, "running signature '%s' failed: %s",
            signature_key, TF_Message(status));
      }
      for (int i = 0; i < num_fetches; ++i) TF_DeleteTensor(output_values[i]);
      nanoseconds[r] = (long long)(stop.tv_sec - start.tv_sec) * 1000000000LL +
                       (stop.tv_nsec - start.tv_nsec);
    }
    printf("timings %lld\n", repeats);
    for (long long r = 0; r < repeats; ++r) {
      printf(r ? " %lld" : "%lld", nanoseconds[r]);
    }
    putchar('\n');
    free(nanoseconds);
  }
  for (int i = 0; i < num_feeds; ++i) TF_DeleteTensor(input_values[i]);
  if (fflush(stdout) != 0) die(EXIT_TF_FAILURE, "could not write the response");

  TF_CloseSession(session, status);
  TF_DeleteSession(session, status);
  TF_DeleteBuffer(meta_graph_def);
  TF_DeleteGraph(graph);
  TF_DeleteSessionOptions(session_options);
  TF_DeleteStatus(status);
  return 0;
}
