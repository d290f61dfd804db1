// The ObjectWriter and ObjectReader of a Store (store.h), internal to
// store/: StoreImpl hands them out from NewObject and OpenObject.
#ifndef RELAIS_STORE_OBJECT_IO_H_
#define RELAIS_STORE_OBJECT_IO_H_

#include <cstddef>
#include <memory>

#include "base/status.h"
#include "store/compression_pool.h"
#include "store/lmdb_env.h"
#include "store/store.h"
#include "store/writer.h"

namespace relais::store {

// A writer of one new object: Append cuts the bytes into chunks of
// `chunk_size` (0 counts as 1) compressed on `pool`; each chunk, then the
// commit (Finish) or the drop (Abort, or destruction unfinished), is queued to
// `writer` in that order. `allow_shuffle`: the store's format version has
// shuffled chunks (FORMAT.md), used once SetPixelLayout gave a layout.
// Runs on the caller's thread; the done callback of Finish runs on the
// writer thread after the commit.
// REQUIRES: `writer` and `pool` outlive the returned object and every chunk
// it submitted.
std::unique_ptr<ObjectWriter> NewObjectWriter(Writer* writer, CompressionPool* pool, size_t chunk_size,
                                              bool allow_shuffle);

// The writer of a store that cannot write objects (read-only or admin mode):
// drops the bytes and fails Finish with `why`.
std::unique_ptr<ObjectWriter> NewRefusingObjectWriter(Status why);

// A chunk-by-chunk reader of the object `meta` describes (Store::OpenObject):
// one short read transaction per chunk. Next returns NotFound when the object
// was replaced or removed while being read, Corruption when a chunk is
// missing or undecodable, or the sizes or the checksum disagree.
// REQUIRES: `*env` outlives the reader.
std::unique_ptr<ObjectReader> NewObjectReader(const LmdbEnv* env, ObjectMeta meta);

}  // namespace relais::store

#endif  // RELAIS_STORE_OBJECT_IO_H_
