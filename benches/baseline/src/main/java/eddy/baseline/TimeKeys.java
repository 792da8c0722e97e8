package eddy.baseline;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import org.apache.kafka.common.utils.Bytes;

/**
 * Keys of the time indexes (saga deadlines, reservation expiries): the time with its sign bit
 * flipped, big-endian, so that byte order is time order, then an id. A RocksDB range scan up to
 * "now" then lists what is due, oldest first.
 */
final class TimeKeys {
    private TimeKeys() {}

    static Bytes of(long at, String id, byte... suffix) {
        byte[] idBytes = id.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + idBytes.length + suffix.length);
        b.putLong(at ^ Long.MIN_VALUE).put(idBytes).put(suffix);
        return Bytes.wrap(b.array());
    }

    /** Everything due at or before {@code now}: keys below those of now + 1. */
    static Bytes upTo(long now) {
        long next = now == Long.MAX_VALUE ? now : now + 1;
        return Bytes.wrap(ByteBuffer.allocate(8).putLong(next ^ Long.MIN_VALUE).array());
    }

    static long time(Bytes key) {
        return ByteBuffer.wrap(key.get(), 0, 8).getLong() ^ Long.MIN_VALUE;
    }

    /** The id bytes after the time. */
    static byte[] rest(Bytes key) {
        return Arrays.copyOfRange(key.get(), 8, key.get().length);
    }
}
