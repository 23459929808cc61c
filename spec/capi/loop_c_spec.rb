# frozen_string_literal: true

require 'tmpdir'

# The event loop's C ABI, from a C program compiled with cc (tests/c/loop_test.c), on both
# backends.
RSpec.describe 'the event loop from C (include/polyphony.h)' do
  it 'reads, writes, accepts, polls, connects, times out, wakes and cancels on io_uring and epoll' do
    Dir.mktmpdir do |dir|
      out, err, status = run_command(build_c_program('tests/c/loop_test.c', dir))
      expect([err, status.success?, out]).to eq(['', true, "event loop C ABI: all checks passed\n"])
    end
  end
end
