#include <gtest/gtest.h>

#include "autoglm/units.h"

using namespace autoglm;

TEST(Units, SizesWithBinaryAndDecimalSuffixes) {
  EXPECT_EQ(parse_size("4GiB"), 4ull << 30);
  EXPECT_EQ(parse_size("512MiB"), 512ull << 20);
  EXPECT_EQ(parse_size("512 MiB"), 512ull << 20);
  EXPECT_EQ(parse_size("1.5GiB"), 3ull << 29);
  EXPECT_EQ(parse_size("2GB"), 2'000'000'000ull);
  EXPECT_EQ(parse_size("4096"), 4096ull);
  EXPECT_EQ(parse_size("4096B"), 4096ull);
  EXPECT_EQ(parse_size("1TiB"), 1ull << 40);
  EXPECT_EQ(parse_size("3gib"), 3ull << 30);
}

TEST(Units, SizesRejectGarbageNegativeAndOverflow) {
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("GiB"));
  EXPECT_FALSE(parse_size("-1GiB"));
  EXPECT_FALSE(parse_size("4 furlongs"));
  EXPECT_FALSE(parse_size("1.5B"));
  EXPECT_FALSE(parse_size("99999999999TiB"));
  EXPECT_FALSE(parse_size("1e400"));
}

TEST(Units, DurationsNeedAUnit) {
  EXPECT_EQ(parse_duration_ms("250ms"), 250u);
  EXPECT_EQ(parse_duration_ms("5s"), 5000u);
  EXPECT_EQ(parse_duration_ms("1.5s"), 1500u);
  EXPECT_EQ(parse_duration_ms("2m"), 120000u);
  EXPECT_EQ(parse_duration_ms("1h"), 3600000u);
  EXPECT_FALSE(parse_duration_ms("5"));
  EXPECT_FALSE(parse_duration_ms("5 parsecs"));
  EXPECT_FALSE(parse_duration_ms("-5s"));
}

TEST(Units, Percent) {
  EXPECT_DOUBLE_EQ(*parse_percent("90%"), 0.9);
  EXPECT_DOUBLE_EQ(*parse_percent("100%"), 1.0);
  EXPECT_FALSE(parse_percent("0%"));
  EXPECT_FALSE(parse_percent("150%"));
  EXPECT_FALSE(parse_percent("90"));
}

TEST(Units, FormatBytes) {
  EXPECT_EQ(format_bytes(17), "17 B");
  EXPECT_EQ(format_bytes(512ull << 20), "512.0 MiB");
  EXPECT_EQ(format_bytes(3ull << 29), "1.5 GiB");
}
