# frozen_string_literal: true

# Builds the Rust extension with cargo (the rb_sys gem is not available here) and writes a
# Makefile whose `install` puts the library where lib/polyphony.rb looks for it. Same shape
# as rb-sys's examples, so switching to `rb_sys/mkmf` later is a change to this file only.
#
# Cargo's build directory goes outside the gem (a temporary directory, removed once the
# library is installed; or $CARGO_TARGET_DIR, kept, to share a cache between builds): left in
# the gem, it made 388 MB of an installed gem's 400. The library is kept once, in lib/.
require 'mkmf'
require 'rbconfig'
require 'tmpdir'

root = File.expand_path('../..', __dir__)
dlext = RbConfig::CONFIG['DLEXT']
target = "polyphony_ext.#{dlext}"
profile = ENV.fetch('POLYPHONY_CARGO_PROFILE', 'release')
install_dir = File.join(root, 'lib', 'polyphony')
cargo = ENV['CARGO'] || find_executable('cargo') || [File.expand_path('~/.cargo/bin/cargo')].find { |c| File.executable?(c) }
unless cargo
  abort 'polyphony: building it needs Rust (cargo 1.80 or later): install it from https://rustup.rs ' \
        '(or `apt install cargo`), then install the gem again'
end

shared_target = ENV.fetch('CARGO_TARGET_DIR', nil)
target_dir = shared_target || Dir.mktmpdir('polyphony-cargo-')
built = File.join(target_dir, profile == 'dev' ? 'debug' : profile, 'libpolyphony_ext.so')
cleanup = shared_target ? '' : "\trm -rf #{target_dir}\n"

File.write('Makefile', <<~MAKE)
  CARGO = #{cargo}
  all:
  \tcd #{root} && CARGO_TARGET_DIR=#{target_dir} $(CARGO) build --locked --profile #{profile} -p polyphony-ext
  \tcp #{built} #{target}
  install: all
  \tmkdir -p $(DESTDIR)#{install_dir}
  \tcp #{target} $(DESTDIR)#{install_dir}/#{target}
  \trm -f #{target}
  #{cleanup}clean:
  \trm -f #{target}
MAKE
