# frozen_string_literal: true

require 'tmpdir'

# The C ABI, from a C program compiled with cc against include/polyphony.h and the static
# library (tests/c/h1p_test.c).
RSpec.describe 'the C ABI (include/polyphony.h)' do
  it 'parses requests and responses for a C program, zero-copy and pull' do
    Dir.mktmpdir do |dir|
      out, err, status = run_command(build_c_program('tests/c/h1p_test.c', dir))
      expect([err, status.success?, out]).to eq(['', true, "h1p C ABI: all checks passed\n"])
    end
  end
end
