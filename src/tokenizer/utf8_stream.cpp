#include "autoglm/tokenizer.h"
#include "unicode.h"

namespace autoglm {

using tokenizer_detail::append_utf8;
using tokenizer_detail::ill_formed_length;
using tokenizer_detail::kReplacementChar;
using tokenizer_detail::utf8_sequence_length;

std::string Utf8StreamDecoder::push(std::string_view bytes) {
  held_.append(bytes);
  std::string out;
  size_t pos = 0;
  while (pos < held_.size()) {
    const std::string_view rest = std::string_view(held_).substr(pos);
    const int length = utf8_sequence_length(rest);
    if (length < 0) break;  // a valid start that needs more bytes: keep it for the next push
    if (length == 0) {
      // Can never become valid: one U+FFFD for the maximal ill-formed subsequence, as the
      // whole-text decoder does.
      append_utf8(out, kReplacementChar);
      pos += ill_formed_length(rest);
    } else {
      out.append(rest.substr(0, static_cast<size_t>(length)));
      pos += static_cast<size_t>(length);
    }
  }
  held_.erase(0, pos);
  return out;
}

std::string Utf8StreamDecoder::flush() {
  std::string out;
  if (!held_.empty()) append_utf8(out, kReplacementChar);  // one incomplete sequence
  held_.clear();
  return out;
}

}  // namespace autoglm
