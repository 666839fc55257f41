// core/text: the shared formatters and the size and duration parsers.
#include <gtest/gtest.h>

#include <stdexcept>

#include "ridgeline/core/text.hpp"

namespace ridgeline {
namespace {

TEST(Format, NumbersBytesAndUnits) {
  EXPECT_EQ(format("%.2f", 3.14159), "3.14");
  EXPECT_EQ(format("%8.3f", 1.5), "   1.500");
  EXPECT_EQ(format("%+.1f%%", 12.34), "+12.3%");
  EXPECT_EQ(format_gib(13.5e9), "12.6 GiB");
  EXPECT_EQ(format_gib(double(3LL << 30), 0), "3 GiB");
  EXPECT_EQ(format_gb(13.5e9), "13.5 GB");
  EXPECT_EQ(format_gb(141.12e9), "141.1 GB");
  EXPECT_EQ(format_bytes(512.0 * 1024), "512 KiB");
  EXPECT_EQ(format_bytes(double(48LL << 20)), "48 MiB");
  EXPECT_EQ(format_bytes(double(4LL << 30)), "4 GiB");
  EXPECT_EQ(format_bytes(1.5 * (1 << 20), 1), "1.5 MiB");
}

TEST(Format, SecondsMillisecondsPercent) {
  EXPECT_EQ(format_seconds(0), "0 s");
  EXPECT_EQ(format_seconds(4.2e-3), "4.2 ms");
  EXPECT_EQ(format_seconds(-12.5e-6), "-12.5 us");
  EXPECT_EQ(format_seconds(850e-9), "850 ns");
  EXPECT_EQ(format_seconds(2.5), "2.5 s");
  EXPECT_EQ(format_ms(0.0125), "12.5 ms");
  EXPECT_EQ(format_ms(0.0125, 3), "12.500 ms");
  EXPECT_EQ(format_percent(0.125), "12.5%");
  EXPECT_EQ(format_percent(0.125, true), "+12.5%");
  EXPECT_EQ(format_percent(-0.03, true), "-3.0%");
}

TEST(Parse, Bytes) {
  EXPECT_EQ(parse_bytes("4GiB"), 4ULL << 30);
  EXPECT_EQ(parse_bytes("256kib"), 256ULL << 10);
  EXPECT_EQ(parse_bytes("2GB"), 2000000000ULL);
  EXPECT_EQ(parse_bytes("1e9"), 1000000000ULL);
  EXPECT_EQ(parse_bytes("3M"), 3ULL << 20);
  EXPECT_THROW(parse_bytes("-1GiB"), std::invalid_argument);
  EXPECT_THROW(parse_bytes("0"), std::invalid_argument);
  EXPECT_THROW(parse_bytes("lots"), std::invalid_argument);
  try {
    parse_bytes("4 parsecs");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown size unit in '4 parsecs'"), std::string::npos)
        << e.what();
  }
}

TEST(Parse, Seconds) {
  EXPECT_DOUBLE_EQ(parse_seconds("50ms"), 0.05);
  EXPECT_DOUBLE_EQ(parse_seconds("0.05"), 0.05);
  EXPECT_DOUBLE_EQ(parse_seconds("2s"), 2.0);
  EXPECT_DOUBLE_EQ(parse_seconds("250us"), 250e-6);
  EXPECT_DOUBLE_EQ(parse_seconds("10ns"), 10e-9);
  EXPECT_THROW(parse_seconds("-1s"), std::invalid_argument);
  EXPECT_THROW(parse_seconds("0"), std::invalid_argument);
  EXPECT_THROW(parse_seconds("inf"), std::invalid_argument);
  EXPECT_THROW(parse_seconds("fast"), std::invalid_argument);
  try {
    parse_seconds("5min");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown time unit in '5min'"), std::string::npos)
        << e.what();
  }
  EXPECT_DOUBLE_EQ(seconds_per_unit("us"), 1e-6);
  EXPECT_DOUBLE_EQ(seconds_per_unit("s"), 1.0);
  EXPECT_DOUBLE_EQ(seconds_per_unit("min"), 0.0);
}

}  // namespace
}  // namespace ridgeline
